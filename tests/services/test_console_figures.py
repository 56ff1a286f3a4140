"""How the console reads this process's Prometheus series (cds/services/console.py): quantiles from histogram
buckets the way Prometheus's histogram_quantile does, and per-BPP values picked by label."""

from __future__ import annotations

import math

import pytest

from cds.metrics import new_metrics
from cds.services.console import MetricView, quantile


def test_quantile_interpolates_inside_the_bucket_like_prometheus():
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    assert quantile(buckets, 0.25) == pytest.approx(0.1)            # rank 10: the top of the first bucket
    assert quantile(buckets, 0.5) == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)
    assert quantile(buckets, 1.0) == pytest.approx(1.0)
    assert quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None    # nothing observed
    assert quantile([(0.1, 1.0), (math.inf, 3.0)], 0.9) == 0.1      # in the +Inf bucket: its lower bound


def test_metric_view_reads_samples_by_label():
    m = new_metrics()
    m.fanout_requests.labels("bpp-a").inc(3)
    m.fanout_requests.labels("bpp-b").inc()
    m.publish_rejected.labels("bpp-a", "catalog").inc(2)
    m.publish_rejected.labels("bpp-a", "item").inc(7)
    for s in (0.002, 0.02, 0.2):
        m.fanout_reply_latency.labels("bpp-a").observe(s)
    v = MetricView(m)
    assert v.by_label("cds_fanout_requests_total", "bpp") == {"bpp-a": 3, "bpp-b": 1}
    assert v.by_label("cds_publish_rejected_total", "bpp", kind="item") == {"bpp-a": 7}
    assert v.get("cds_fanout_reply_seconds_count", bpp="bpp-a") == 3
    assert v.get("cds_fanout_requests_total", bpp="nobody") == 0
    b = v.buckets("cds_fanout_reply_seconds", bpp="bpp-a")
    assert b[-1] == (math.inf, 3) and all(x[0] < y[0] for x, y in zip(b, b[1:]))
