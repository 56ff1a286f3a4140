"""Business logic between the HTTP handlers and the lower floors: discover and publish."""
