"""The pure domain: wire models of both dialects, JSONPath, query planning and matching, geometry, time,
index documents and catalog normalisation, reply bodies. No I/O and no settings object: callers pass values."""
