"""cds.metrics: labelled children are remembered by their values, and what a scrape shows is unchanged."""

from __future__ import annotations

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
