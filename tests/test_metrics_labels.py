"""cds.metrics: labelled children are remembered by their values, and what a scrape shows is unchanged."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from cds.metrics import new_metrics


def _samples(m) -> dict:
    text = m.render()[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples if s.name.startswith("cds_")}


def test_a_child_is_remembered_and_counts_like_one_made_by_name():
    m = new_metrics()
    child = m.requests.labels("discover", "ack")
    assert m.requests.labels("discover", "ack") is child
    child.inc()
    m.requests.labels(action="discover", outcome="ack").inc()
    m.requests.labels("discover", "nack").inc(3)
    m.search_latency.labels("embedded").observe(0.002)
    got = _samples(m)
    assert got[("cds_requests_total", (("action", "discover"), ("outcome", "ack")))] == 2
    assert got[("cds_requests_total", (("action", "discover"), ("outcome", "nack")))] == 3
    assert got[("cds_search_duration_seconds_count", (("backend", "embedded"),))] == 1


def test_apps_in_one_process_keep_their_own_children():
    a, b = new_metrics(), new_metrics()
    a.requests.labels("discover", "ack").inc()
    assert b.requests.labels("discover", "ack") is not a.requests.labels("discover", "ack")
    assert ("cds_requests_total", (("action", "discover"), ("outcome", "ack"))) not in _samples(b) or \
        _samples(b)[("cds_requests_total", (("action", "discover"), ("outcome", "ack")))] == 0


async def test_deferred_observations_scrape_like_direct_ones():
    # the same observations, one metric set directly and one deferred: the scrape must not tell them apart
    # (inside the loop's turn: the deferred ones are still in memory when the first scrape comes)
    direct, deferred = new_metrics(), new_metrics()
    values = [0.0, 0.0005, 0.0007, 0.001, 0.01, 0.3, 10, 11, 1e9, -1.0]     # bounds themselves, beyond the last
    for v in values:
        direct.latency.labels("discover", "ack").observe(v)
        deferred.latency.deferred("discover", "ack").observe(v)
        direct.discover_results.observe(v)
        deferred.discover_results.deferred().observe(v)
    direct.requests.labels("discover", "ack").inc()
    deferred.requests.deferred("discover", "ack").inc()
    def counted(m) -> dict:
        return {k: v for k, v in _samples(m).items() if not k[0].endswith("_created")}
    assert counted(deferred) == counted(direct)
    assert counted(deferred) == counted(direct)             # flushed once: nothing counted twice


async def test_deferred_observations_are_written_at_the_end_of_the_loops_turn():
    m = new_metrics()
    m.requests.deferred("discover", "nack").inc(2)
    m.latency.deferred("discover", "nack").observe(0.003)
    child = m.requests.labels("discover", "nack")
    assert child._value.get() == 0                          # in memory while this turn of the loop runs
    await asyncio.sleep(0)
    assert child._value.get() == 2
    m.requests.deferred("discover", "nack").inc()
    assert {s.value for f in m.requests.collect() for s in f.samples       # a collect does not wait for it
            if s.name == "cds_requests_total" and s.labels == {"action": "discover", "outcome": "nack"}} == {3}
    m.requests.deferred("discover", "nack").inc()
    await asyncio.sleep(0)
    assert child._value.get() == 4                          # and the next observation schedules its own


def test_without_an_event_loop_a_deferred_observation_writes_through():
    m = new_metrics()
    m.requests.deferred("discover", "ack").inc()
    assert m.requests.labels("discover", "ack")._value.get() == 1


def test_a_deferred_nan_lands_in_no_bucket_as_a_direct_one():
    direct, deferred = new_metrics(), new_metrics()
    direct.discover_results.observe(float("nan"))
    deferred.discover_results.deferred().observe(float("nan"))
    buckets = [{k: v for k, v in _samples(m).items() if k[0].endswith(("_bucket", "_count"))} for m in (direct, deferred)]
    assert buckets[0] == buckets[1] and set(buckets[0].values()) == {0}
