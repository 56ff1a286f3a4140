"""Who may do what: signatures, the registry, roles and ownership, replay and rate limits, the network
guard for callbacks, and signed outbound calls."""
