"""Every TTL rule of docs/decisions.md §S, over real HTTP, with the service clock under the test's control.

`create_app(..., clock=FakeClock)` moves the time the CDS indexes and answers with; signatures and context
timestamps still use the real time (they are checked against it), so only the TTL logic sees the fake one.
The data is the UBC publish example with its validity, offers, `isActive` and live status edited per rule.
Expected answers are written out by hand from the rule (the clock positions are far from every boundary
except where a boundary is the point, and then both sides are asserted).
"""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from cds.api.app import create_app
from cds.api.appkeys import STORAGE
from tests.harness import fresh_context, iso, load_fixture, start_client
from tests.schemas import validate_on_discover

IST = ZoneInfo("Asia/Kolkata")
HOUR, DAY = 3600.0, 86400.0
# 09:00 IST today: every clock position below is an offset from it (IST has no DST).
T0 = datetime.now(IST).replace(hour=9, minute=0, second=0, microsecond=0).timestamp()
PUBLISH = "UBC_catalog_publish_ev-charging-catalog-publish.json"
CIRCLE = "UBC_discovery-within-a-circular-boundary.json"   # 10 km around all three UBC items
I1, I2, I3 = (it["beckn:id"] for it in load_fixture(PUBLISH)["message"]["catalogs"][0]["beckn:items"])


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ist(hh: int, mm: int = 0, day: int = 0) -> float:
    """An instant at hh:mm IST, `day` days after T0's day."""
    return T0 + (hh - 9) * HOUR + mm * 60 + day * DAY


def catalog(cid: str = "catalog-ev-charging-001", *, validity: tuple[float | None, float | None] | None = None,
            offers: list[dict] | None = None) -> dict:
    cat = copy.deepcopy(load_fixture(PUBLISH)["message"]["catalogs"][0])
    cat["beckn:id"] = cid
    if validity:
        cat["beckn:validity"] = {"@type": "beckn:TimePeriod",
                                 **({"schema:startDate": iso(validity[0])} if validity[0] else {}),
                                 **({"schema:endDate": iso(validity[1])} if validity[1] else {})}
    if offers is not None:
        cat["beckn:offers"] = offers
    return cat


def offer(oid: str, items: list[str], start: float, end: float, daily: tuple[str, str] | None = None) -> dict:
    """An offer shaped like the UBC example's, with its own validity (and a daily window, if given)."""
    o = copy.deepcopy(load_fixture(PUBLISH)["message"]["catalogs"][0]["beckn:offers"][0])
    o["beckn:id"], o["beckn:items"] = oid, items
    o["beckn:validity"] = {"@type": "beckn:TimePeriod", "schema:startDate": iso(start), "schema:endDate": iso(end)}
    if daily:
        o["beckn:validity"]["schema:startTime"], o["beckn:validity"]["schema:endTime"] = daily
    return o


class Cds:
    def __init__(self, net, client, clock: FakeClock) -> None:
        self.net, self.client, self.clock = net, client, clock
        self.published = 0

    @property
    def storage(self):
        return self.client.server.app[STORAGE]

    async def publish(self, *catalogs: dict) -> list[dict]:
        net = self.net
        doc = fresh_context(load_fixture(PUBLISH), bpp_id=net.bpp.subscriber_id, bpp_uri=net.bpp.url)
        for c in catalogs:
            c["beckn:bppId"], c["beckn:bppUri"] = net.bpp.subscriber_id, net.bpp.url
        doc["message"]["catalogs"] = list(catalogs)
        body = orjson.dumps(doc)
        resp = await self.client.post("/beckn/catalog/publish", data=body, headers=net.bpp.sign(body))
        assert resp.status == 200, await resp.text()
        self.published += 1
        received = await publish_reports(net.bpp_sink, self.published)
        results = orjson.loads(received[self.published - 1][2])["message"]["results"]
        assert all(r["status"] == "ACCEPTED" for r in results), results
        return results

    async def discover(self, at: float, name: str = CIRCLE, expression: str | None = None) -> dict:
        self.clock.t = at
        doc = fresh_context(load_fixture(name), bap_id=self.net.bap.subscriber_id, bap_uri=self.net.bap.url)
        if expression is not None:
            doc["message"]["filters"] = {"type": "jsonpath", "expression": expression}
        body = orjson.dumps(doc)
        resp = await self.client.request("GET", "/beckn/discover", data=body, headers=self.net.bap.sign(body))
        assert resp.status == 200, await resp.text()
        out = orjson.loads(await resp.read())
        validate_on_discover(out, "A")
        return out


async def publish_reports(sink, n: int) -> list:
    """The first n on_catalog_publish callbacks the sink received (anything else it got is skipped)."""
    k = n
    while True:
        got = [r for r in await sink.wait_for(k) if r[0].endswith("publish")]
        if len(got) >= n:
            return got
        k = len(sink.received) + 1


async def start(network, at: float = T0, **settings) -> Cds:
    # Fan-out off: these rules are about the cached index; an expired publisher would otherwise become a
    # fan-out target (docs/decisions.md §S) and the answer would wait for it.
    settings.setdefault("fanout_max_bpps", 0)
    clock = FakeClock(at)
    client = await start_client(create_app(network.settings(**settings), clock=clock))
    return Cds(network, client, clock)


def item_ids(body: dict) -> set[str]:
    return {i["beckn:id"] for c in body["message"]["catalogs"] for i in c["beckn:items"]}


def offer_ids(body: dict) -> set[str]:
    return {o["beckn:id"] for c in body["message"]["catalogs"] for o in c["beckn:offers"]}


def attrs_of(body: dict, iid: str) -> dict:
    return next(i["beckn:itemAttributes"] for c in body["message"]["catalogs"] for i in c["beckn:items"]
                if i["beckn:id"] == iid)


# ---- catalog ----------------------------------------------------------------------------------------------

async def test_catalog_validity_end_and_start(network):
    cds = await start(network)
    try:
        await cds.publish(catalog("ends", validity=(T0 - DAY, T0 + HOUR)),
                          catalog("starts", validity=(T0 + 2 * HOUR, T0 + 10 * DAY)))
        body = await cds.discover(T0)
        assert {c["beckn:id"] for c in body["message"]["catalogs"]} == {"ends"}
        assert item_ids(body) == {I1, I2, I3}
        body = await cds.discover(T0 + HOUR - 1)
        assert {c["beckn:id"] for c in body["message"]["catalogs"]} == {"ends"}
        body = await cds.discover(T0 + HOUR + 1)   # "ends" is over, "starts" has not begun
        assert body["message"]["catalogs"] == []
        body = await cds.discover(T0 + 3 * HOUR)
        assert {c["beckn:id"] for c in body["message"]["catalogs"]} == {"starts"}
    finally:
        await cds.client.close()


async def test_catalog_max_age_since_last_publish(network):
    cds = await start(network, catalog_max_age_s=int(2 * HOUR))
    try:
        await cds.publish(catalog("no-validity"), catalog("long-validity", validity=(T0 - DAY, T0 + 30 * DAY)))
        body = await cds.discover(T0 + 2 * HOUR - 10)
        assert {c["beckn:id"] for c in body["message"]["catalogs"]} == {"no-validity", "long-validity"}
        body = await cds.discover(T0 + 2 * HOUR + 10)  # a validity far ahead does not lift the cap
        assert body["message"]["catalogs"] == []
        # Re-publishing restarts the age: published at T0+3h, alive until T0+5h.
        cds.clock.t = T0 + 3 * HOUR
        await cds.publish(catalog("no-validity"))
        body = await cds.discover(T0 + 5 * HOUR - 10)
        assert {c["beckn:id"] for c in body["message"]["catalogs"]} == {"no-validity"}
        assert (await cds.discover(T0 + 5 * HOUR + 10))["message"]["catalogs"] == []
    finally:
        await cds.client.close()


# ---- offers and items -------------------------------------------------------------------------------------

async def test_offer_validity_dates_drop_the_offer_not_the_item(network):
    cds = await start(network)
    try:
        await cds.publish(catalog(validity=(T0 - DAY, T0 + 30 * DAY), offers=[
            offer("until-noon", [I1], T0 - DAY, ist(12)),
            offer("from-tomorrow", [I1], ist(0, day=1), T0 + 20 * DAY),
            offer("always", [I2], T0 - DAY, T0 + 20 * DAY),
        ]))
        body = await cds.discover(ist(11))
        assert item_ids(body) == {I1, I2, I3}
        assert offer_ids(body) == {"until-noon", "always"}
        body = await cds.discover(ist(13))
        assert item_ids(body) == {I1, I2, I3}          # the item stays ...
        assert offer_ids(body) == {"always"}           # ... its expired offer leaves the reply
        body = await cds.discover(ist(1, day=1))
        assert offer_ids(body) == {"from-tomorrow", "always"}
    finally:
        await cds.client.close()


async def test_lunch_hour_promo_only_inside_its_daily_window(network):
    cds = await start(network)
    try:
        await cds.publish(catalog(validity=(T0 - DAY, T0 + 30 * DAY), offers=[
            offer("base", [I1], T0 - DAY, T0 + 20 * DAY),
            offer("lunch", [I1], T0 - DAY, T0 + 20 * DAY, daily=("12:00:00", "14:00:00")),
        ]))
        for at, promo in [(ist(11, 59), False), (ist(12, 1), True), (ist(13, 30), True), (ist(14, 1), False),
                          (ist(23, 0), False), (ist(12, 30, day=3), True), (ist(15, 0, day=3), False)]:
            body = await cds.discover(at)
            assert item_ids(body) == {I1, I2, I3}
            assert offer_ids(body) == ({"base", "lunch"} if promo else {"base"}), datetime.fromtimestamp(at, IST)
    finally:
        await cds.client.close()


async def test_inactive_item_is_hidden(network):
    cds = await start(network)
    try:
        cat = catalog()
        cat["beckn:items"][2]["beckn:isActive"] = False
        await cds.publish(cat)
        assert item_ids(await cds.discover(T0)) == {I1, I2}
        qr = f"$[?(@.beckn:id == '{I3}')]"
        assert (await cds.discover(T0, expression=qr))["message"]["catalogs"] == []
        # Re-published active, it is back.
        cat["beckn:items"][2]["beckn:isActive"] = True
        await cds.publish(cat)
        assert item_ids(await cds.discover(T0, expression=qr)) == {I3}
    finally:
        await cds.client.close()


async def test_live_status_turns_unknown_never_available(network):
    cds = await start(network, status_fresh_s=600)
    try:
        cat = catalog()
        cat["beckn:items"][0]["beckn:itemAttributes"]["stationStatus"] = "Available"
        await cds.publish(cat)
        available = "$[?(@.beckn:itemAttributes.stationStatus == 'Available')]"
        body = await cds.discover(T0 + 60)
        assert attrs_of(body, I1)["stationStatus"] == "Available"
        assert item_ids(await cds.discover(T0 + 60, expression=available)) == {I1}
        body = await cds.discover(T0 + 601)
        assert I1 in item_ids(body)                    # the item is still offered ...
        assert attrs_of(body, I1)["stationStatus"] == "Unknown"   # ... with its status unknown
        assert (await cds.discover(T0 + 601, expression=available))["message"]["catalogs"] == []
        # A new publish makes it fresh again.
        cds.clock.t = T0 + 700
        await cds.publish(cat)
        assert attrs_of(await cds.discover(T0 + 710), I1)["stationStatus"] == "Available"
    finally:
        await cds.client.close()


# ---- purge ------------------------------------------------------------------------------------------------

async def test_expired_data_is_filtered_then_purged(network):
    cds = await start(network)
    try:
        await cds.publish(catalog("short", validity=(T0 - DAY, T0 + HOUR)),
                          catalog("long", validity=(T0 - DAY, T0 + 30 * DAY), offers=[
                              offer("expiring", [I1], T0 - DAY, T0 + HOUR),
                              offer("lasting", [I2], T0 - DAY, T0 + 20 * DAY)]))
        assert (await cds.storage.stats()).catalogs == 2
        later = T0 + 2 * HOUR
        # Filtered at query time before any purge ...
        body = await cds.discover(later)
        assert {c["beckn:id"] for c in body["message"]["catalogs"]} == {"long"}
        assert offer_ids(body) == {"lasting"}
        # ... and the purge removes it from storage: counts drop, and even a query at an earlier clock
        # (where it was still valid) no longer finds it.
        stats = await cds.storage.purge_expired(later)
        assert (stats.catalogs, stats.offers) == (1, 1)
        assert (await cds.storage.stats()).catalogs == 1
        assert (await cds.storage.stats()).items == 3
        body = await cds.discover(T0)
        assert {c["beckn:id"] for c in body["message"]["catalogs"]} == {"long"}
        assert offer_ids(body) == {"lasting"}
        again = await cds.storage.purge_expired(later)
        assert (again.catalogs, again.offers) == (0, 0)
    finally:
        await cds.client.close()


async def test_background_sweeper_purges(network):
    cds = await start(network, purge_interval_s=0.05)
    try:
        await cds.publish(catalog("short", validity=(T0 - DAY, T0 + HOUR)), catalog("long"))
        assert (await cds.storage.stats()).catalogs == 2
        cds.clock.t = T0 + 2 * HOUR
        for _ in range(200):                      # waits for the sweeper; no timing is asserted
            if (await cds.storage.stats()).catalogs == 1:
                break
            await asyncio.sleep(0.05)
        assert (await cds.storage.stats()).catalogs == 1
        assert await cds.storage.get_catalog(network.bpp.subscriber_id, "short") is None
        assert await cds.storage.get_catalog(network.bpp.subscriber_id, "long") is not None
    finally:
        await cds.client.close()
