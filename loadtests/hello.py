"""Bare aiohttp hello-world: the throughput baseline of the load test (docs/decisions.md §G).

    python -m loadtests.hello --port 18080

Answers every method and path with a constant 13-byte body and no work at all, so the same locust client
driving it and the CDS in the same run shows what the CDS costs beyond aiohttp itself."""

from __future__ import annotations

import argparse

from aiohttp import web

_BODY = b"Hello, world!"


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="text/plain")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.hello", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18080)
    a = p.parse_args(argv)
    # No access log, like `cds serve`, so the handler is what differs (timeouts: cds/api/server.py).
    web.run_app(create_app(), host=a.host, port=a.port, print=None, access_log=None, shutdown_timeout=5)


if __name__ == "__main__":
    main()
