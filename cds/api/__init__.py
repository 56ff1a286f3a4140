"""The HTTP face: the aiohttp app factory, routes, handlers and typed app keys. Only the CLI imports it."""
