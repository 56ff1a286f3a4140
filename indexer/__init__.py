"""Storage and ingest: the storage interface and its backends (embedded, Elasticsearch), and the durable
ingest path from an ACKed publish to searchable documents (`indexer.ingest`). Uses the domain core below it."""
