"""The `cds` command: serve, indexer, keygen, request, index init."""
