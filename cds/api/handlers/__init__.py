"""Thin HTTP handlers: read and check the request, call a service, reply ACK/NACK."""
