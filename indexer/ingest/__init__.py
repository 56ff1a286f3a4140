"""From an ACKed publish to searchable documents: the entry codec, the local durable log, the Redis stream,
the worker and its process, partition leases, and the indexing step with its on_catalog_publish report."""
