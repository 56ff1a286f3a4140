"""Ingest and storage: catalog normalisation, storage backends, durable ingest, expiry."""
