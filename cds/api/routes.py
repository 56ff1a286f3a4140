"""Route table (docs/decisions.md §W). Every Beckn route exists under the configured base path (default
/beckn) and un-prefixed; route names carry the action for metrics and logs."""

from __future__ import annotations

from aiohttp import web

from cds.api.handlers import health
from cds.api.handlers.discover import DiscoverView
from cds.api.handlers.on_discover import OnDiscoverView
from cds.api.handlers.publish import PublishView

PUBLISH_PATHS = ("/catalog/publish", "/v2/catalog/publish", "/catalog_publish")


def setup_routes(app: web.Application, base_path: str) -> None:
    prefixes = [base_path, ""] if base_path else [""]
    for i, prefix in enumerate(prefixes):
        app.router.add_view(prefix + "/discover", DiscoverView, name=f"discover.p{i}")
        app.router.add_view(prefix + "/on_discover", OnDiscoverView, name=f"on_discover.p{i}")
        for j, path in enumerate(PUBLISH_PATHS):
            app.router.add_view(prefix + path, PublishView, name=f"catalog_publish.p{i}{j}")
    app.router.add_get("/health/live", health.live)
    app.router.add_get("/health/ready", health.ready)
    app.router.add_get("/metrics", health.metrics)
