"""Business logic between the HTTP handlers and the storage interface."""
