"""How many demo connectors a few text searches find (docs/decisions.md §25), with no result cap: the demo
catalogs (`cds serve --demo`) normalised and matched in process by the same planner and matcher as a discover.

    python -m loadtests.text_counts ["query" ...]
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from cds.config import load_settings
from cds.core import matching
from cds.core.models import DiscoverIntent
from cds.core.normalize import normalize_catalog
from cds.core.planner import build_query
from cds.demo.seed import demo_catalogs

QUERIES = ("Give me all charging stations.", "fast dc charging koramangala", "charging station", "charging stations",
           "show me all nearby, please")


def main(argv: list[str] | None = None) -> int:
    queries = (argv if argv is not None else sys.argv[1:]) or QUERIES
    settings = load_settings({}, max_results=1_000_000)
    now = time.time()
    records = [normalize_catalog(cat, publisher_id=pub, publisher_uri=uri, dialect="A", settings=settings, now=now)[0]
               for pub, uri, cat in demo_catalogs(datetime.now(timezone.utc))]
    print(f"{sum(len(r.items) for r in records)} demo items")
    for q in queries:
        query = build_query(DiscoverIntent(text_search=q), settings=settings)
        found = len(matching.brute_force(query, records, now))
        print(f"{found:6d}  {q!r}" + ("" if query.text else "  (no text criterion left)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
