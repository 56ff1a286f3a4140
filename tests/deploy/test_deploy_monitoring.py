"""Monitoring artefacts: Prometheus alert rules and scrape config, the Grafana dashboard and its
provisioning. Every PromQL expression may reference only metrics that cds/metrics.py defines (with their
labels), the client library's process_* series, or Prometheus' `up`.
"""

from __future__ import annotations

import ast
import json
import re
import shutil

import pytest
import yaml

from tests.deploy_tools import DEPLOY, PROMTOOL, REPO, compose, run


# ----------------------------------------------------------------------------------- PromQL references

def metric_catalog() -> dict[str, set[str]]:
    """Exposed series name -> label names, from the source of cds/metrics.py (cross-checked against the
    registry it builds) plus the client library's process_* series and Prometheus' own `up`."""
    tree = ast.parse((REPO / "cds" / "metrics.py").read_text())
    families: dict[str, tuple[str, set[str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Counter", "Gauge", "Histogram", "Summary"):
            name = node.args[0].value
            labels = node.args[2] if len(node.args) > 2 else next(
                (k.value for k in node.keywords if k.arg == "labelnames"), ast.List(elts=[]))
            families[name] = (node.func.id, {e.value for e in labels.elts})
    catalog: dict[str, set[str]] = {}
    for name, (kind, labels) in families.items():
        if kind == "Counter":
            base = name.removesuffix("_total")
            catalog |= {base + "_total": labels, base + "_created": labels}
        elif kind == "Gauge":
            catalog[name] = labels
        else:
            catalog |= {name + "_bucket": labels | {"le"}, name + "_sum": labels, name + "_count": labels}
    from cds.metrics import new_metrics
    registry = new_metrics().registry
    runtime = {m.name for m in registry.collect() if m.name.startswith("cds_")}
    assert runtime == {n.removesuffix("_total") if families[n][0] == "Counter" else n for n in families}
    for m in registry.collect():
        if m.name.startswith(("process_", "python_")):
            catalog |= {s.name: set(s.labels) for s in m.samples}
    catalog["up"] = set()
    return catalog


TARGET_LABELS = {"job", "instance"}
_FUNCS = {"sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "group", "rate", "irate", "increase",
          "delta", "deriv", "histogram_quantile", "absent", "abs", "clamp_min", "clamp_max", "label_values",
          "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "vector", "scalar", "time"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan"}


def promql_refs(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """([(metric, label names in its matchers)], grouping labels) of a PromQL expression (Grafana
    variables allowed). Not a parser: enough to catch unknown metrics and label names."""
    e = re.sub(r"\$\{?\w+\}?", "VAR", expr)
    selectors = []
    for m in re.finditer(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}", e):
        selectors.append((m.group(1), set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", m.group(2)))))
    e = re.sub(r"\{[^}]*\}", " ", e)
    grouping = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        grouping |= {g.strip() for g in m.group(1).split(",") if g.strip()}
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\"[^\"]*\"|\[[^\]]*\]", " ", e)
    named = {s for s, _ in selectors if s}
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", e):
        w = m.group(1)
        if w not in named and w not in _KEYWORDS and w not in _FUNCS:
            selectors.append((w, set()))
    return [(n, l) for n, l in selectors if n], grouping


def check_expr(expr: str, catalog: dict[str, set[str]]) -> list[str]:
    problems = []
    selectors, grouping = promql_refs(expr)
    if not selectors:
        problems.append(f"no metric found in {expr!r}")
    for name, labels in selectors:
        if name not in catalog:
            problems.append(f"unknown metric {name} in {expr!r}")
        elif not labels <= catalog[name] | TARGET_LABELS:
            problems.append(f"{name} has no label(s) {labels - catalog[name] - TARGET_LABELS} in {expr!r}")
    allowed = set().union(*(catalog.get(n, set()) for n, _ in selectors)) | TARGET_LABELS
    if not grouping <= allowed:
        problems.append(f"grouping by unknown label(s) {grouping - allowed} in {expr!r}")
    return problems


def test_promql_reference_check_can_fail():
    catalog = metric_catalog()
    assert check_expr('sum by (action) (rate(cds_requests_total{outcome="error"}[5m]))', catalog) == []
    assert check_expr("rate(cds_request_total[5m])", catalog)                 # misspelt metric
    assert check_expr('rate(cds_requests_total{result="x"}[5m])', catalog)     # no such label
    assert check_expr("sum by (code) (rate(cds_requests_total[5m]))", catalog)  # code is on cds_nacks_total


# ------------------------------------------------------------------------------------------- Prometheus

def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert set(doc) == {"groups"}
    rules = []
    for g in doc["groups"]:
        assert set(g) == {"name", "rules"} and g["rules"], g.get("name")
        rules += g["rules"]
    return rules


def runbook_anchors() -> set[str]:
    heads = re.findall(r"^#+\s+(.+?)\s*$", (DEPLOY / "RUNBOOK.md").read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in heads}


def test_alert_rules_structure():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    anchors = runbook_anchors()
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert re.fullmatch(r"CDS[A-Z]\w+", r["alert"])
        assert re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert {"summary", "description", "runbook"} <= set(r["annotations"]), r["alert"]
        assert r["annotations"]["runbook"] == f"deploy/RUNBOOK.md#{r['alert'].lower()}"
        assert r["alert"].lower() in anchors, f"no RUNBOOK.md section for {r['alert']}"
        if "job=" in r["expr"]:
            assert set(re.findall(r'job="([^"]*)"', r["expr"])) == {"cds"}, r["alert"]


def test_alert_rules_reference_real_metrics_and_cover_the_failures_that_matter():
    catalog = metric_catalog()
    problems = [p for r in alert_rules() for p in check_expr(r["expr"], catalog)]
    assert not problems, problems
    exprs = " ".join(r["expr"] for r in alert_rules())
    for needle in ('cds_callbacks_total{job="cds",outcome="failed"}', "cds_index_freshness_lag_seconds",
                   "cds_ingest_pending", 'cds_requests_total{job="cds",outcome="error"}', "cds_fanout_circuit_open",
                   'up{job="cds"} == 0', "cds_ingest_consumer_lag", "cds_ingest_stream_pending",
                   "cds_ingest_dead_letters", "cds_ingest_rejected_total"):
        assert needle in exprs, needle


def test_prometheus_config_matches_the_compose_stack():
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    prom = compose()["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prom["volumes"] if v.startswith("."))
    host_of = {target: host for host, target in mounts.items()}
    assert [host_of[rf] for rf in cfg["rule_files"]] == ["./prometheus/alerts.yml"]
    assert host_of["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    targets = [t for sc in jobs["cds"]["static_configs"] for t in sc["targets"]]
    assert jobs["cds"]["metrics_path"] == "/metrics" and targets
    services = compose()["services"]
    for t in targets + [t for sc in jobs["cds-demo-bpp"]["static_configs"] for t in sc["targets"]]:
        host, port = t.split(":")
        assert host in services and services[host]["command"][-1] == port, t


@pytest.mark.parametrize("what", ["rules", "config"])
def test_promtool_check(what, tmp_path):
    promtool = PROMTOOL
    if not promtool.exists():
        pytest.skip("promtool not built (optional: CDS_TOOLS_PROMTOOL=1 bash scripts/tools.sh)")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    if what == "rules":
        run(promtool, "check", "rules", tmp_path / "alerts.yml")
    else:
        cfg = (DEPLOY / "prometheus" / "prometheus.yml").read_text().replace("/etc/prometheus/", "")
        (tmp_path / "prometheus.yml").write_text(cfg)
        run(promtool, "check", "config", "--syntax-only", tmp_path / "prometheus.yml")


def test_promtool_rule_unit_tests(tmp_path):
    """Alerts fire on the series that should trigger them, and stay quiet otherwise (promtool test rules)."""
    if not PROMTOOL.exists():
        pytest.skip("promtool not built (optional: CDS_TOOLS_PROMTOOL=1 bash scripts/tools.sh)")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    ann = {r["alert"]: r["annotations"] for r in alert_rules()}

    def fired(alert: str, labels: dict, pct: str = "", dur: str = "", value: str = "") -> dict:
        """An expected firing alert; its annotations are the rule's templates filled in by hand."""
        fill = {"{{ $value | humanizePercentage }}": pct, "{{ $value | humanizeDuration }}": dur,
                "{{ $value }}": value, **{f"{{{{ $labels.{k} }}}}": v for k, v in labels.items()}}
        annotations = {}
        for k, text in ann[alert].items():
            for template, v in fill.items():
                text = text.replace(template, v)
            annotations[k] = text
        return {"exp_labels": labels, "exp_annotations": annotations}

    a = 'job="cds",instance="api-0:8080"'
    tests = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m",
         "input_series": [
             {"series": f'cds_callbacks_total{{{a},action="on_discover",outcome="failed"}}', "values": "0+10x40"},
             {"series": f'cds_callbacks_total{{{a},action="on_discover",outcome="delivered"}}', "values": "0+90x40"},
             {"series": f'cds_callbacks_total{{{a},action="on_catalog_publish",outcome="delivered"}}', "values": "0+50x40"},
             {"series": f"up{{{a}}}", "values": "1 1 1 0x37"},
             {"series": f"cds_ingest_pending{{{a}}}", "values": "5x40"},
             {"series": f'cds_publish_catalogs_total{{{a},status="ACCEPTED"}}', "values": "3x40"},
             {"series": f"cds_index_freshness_lag_seconds{{{a}}}", "values": "60x40"},
             {"series": f'cds_requests_total{{{a},action="discover",outcome="ack"}}', "values": "0+100x40"},
             {"series": f"cds_ingest_consumer_lag{{{a}}}", "values": "20x40"},
             {"series": f"cds_ingest_stream_pending{{{a}}}", "values": "64x40"},
             {"series": f"cds_ingest_index_unavailable_total{{{a}}}", "values": "7x40"},
             {"series": f"cds_ingest_dead_letters{{{a}}}", "values": "0x40"},
             {"series": f'cds_ingest_rejected_total{{{a},reason="overloaded"}}', "values": "4x40"},
         ],
         "alert_rule_test": [
             {"eval_time": "30m", "alertname": "CDSCallbackFailureRate",
              "exp_alerts": [fired("CDSCallbackFailureRate", {"severity": "warning", "action": "on_discover"}, pct="10%")]},
             {"eval_time": "30m", "alertname": "CDSInstanceDown",
              "exp_alerts": [fired("CDSInstanceDown", {"severity": "critical", "job": "cds", "instance": "api-0:8080"})]},
             {"eval_time": "40m", "alertname": "CDSIngestStalled",
              "exp_alerts": [fired("CDSIngestStalled", {"severity": "critical"}, value="5")]},
             {"eval_time": "5m", "alertname": "CDSCallbackFailureRate", "exp_alerts": []},     # `for` not over
             {"eval_time": "40m", "alertname": "CDSIndexStale", "exp_alerts": []},
             {"eval_time": "30m", "alertname": "CDSHighErrorRate", "exp_alerts": []},
             {"eval_time": "30m", "alertname": "CDSFanoutCircuitOpen", "exp_alerts": []},
             {"eval_time": "30m", "alertname": "CDSIngestConsumerLag", "exp_alerts": []},
             {"eval_time": "30m", "alertname": "CDSIngestUnacked", "exp_alerts": []},   # pending, index fine
             {"eval_time": "30m", "alertname": "CDSIngestDeadLetters", "exp_alerts": []},
             {"eval_time": "30m", "alertname": "CDSPublishRefused", "exp_alerts": []},
         ]},
        {"interval": "1m",
         "input_series": [
             {"series": f"cds_ingest_pending{{{a}}}", "values": "5x40"},
             {"series": f'cds_publish_catalogs_total{{{a},status="ACCEPTED"}}', "values": "0+1x40"},
             {"series": f"cds_index_freshness_lag_seconds{{{a}}}", "values": "2000x40"},
             {"series": f'cds_requests_total{{{a},action="discover",outcome="ack"}}', "values": "0+98x40"},
             {"series": f'cds_requests_total{{{a},action="discover",outcome="error"}}', "values": "0+2x40"},
             {"series": f'cds_fanout_circuit_open{{{a},bpp="bpp.example"}}', "values": "1x40"},
             {"series": f'cds_fanout_circuit_open{{{a},bpp="ok.example"}}', "values": "0x40"},
             {"series": f"cds_ingest_consumer_lag{{{a}}}", "values": "5000x40"},
             {"series": f"cds_ingest_stream_pending{{{a}}}", "values": "64x40"},
             {"series": f"cds_ingest_index_unavailable_total{{{a}}}", "values": "0+3x40"},
             {"series": f"cds_ingest_dead_letters{{{a}}}", "values": "0 0 0 2x37"},
             {"series": f'cds_ingest_rejected_total{{{a},reason="overloaded"}}', "values": "0+10x40"},
             {"series": f"up{{{a}}}", "values": "1x40"},
         ],
         "alert_rule_test": [
             {"eval_time": "40m", "alertname": "CDSIngestStalled", "exp_alerts": []},   # it is progressing
             {"eval_time": "40m", "alertname": "CDSInstanceDown", "exp_alerts": []},
             {"eval_time": "30m", "alertname": "CDSHighErrorRate",
              "exp_alerts": [fired("CDSHighErrorRate", {"severity": "critical"}, pct="2%")]},
             {"eval_time": "30m", "alertname": "CDSIndexStale",
              "exp_alerts": [fired("CDSIndexStale", {"severity": "warning"}, dur="33m 20s")]},
             {"eval_time": "30m", "alertname": "CDSFanoutCircuitOpen",
              "exp_alerts": [fired("CDSFanoutCircuitOpen", {"severity": "warning", "bpp": "bpp.example"})]},
             {"eval_time": "30m", "alertname": "CDSIngestConsumerLag",
              "exp_alerts": [fired("CDSIngestConsumerLag", {"severity": "warning"}, value="5000")]},
             {"eval_time": "30m", "alertname": "CDSIngestUnacked",
              "exp_alerts": [fired("CDSIngestUnacked", {"severity": "critical"}, value="64")]},
             {"eval_time": "30m", "alertname": "CDSIngestDeadLetters",
              "exp_alerts": [fired("CDSIngestDeadLetters", {"severity": "warning"}, value="2")]},
             {"eval_time": "7m", "alertname": "CDSIngestDeadLetters", "exp_alerts": []},       # `for` not over
             {"eval_time": "30m", "alertname": "CDSPublishRefused",
              "exp_alerts": [fired("CDSPublishRefused", {"severity": "warning", "reason": "overloaded"})]},
         ]}]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    run(PROMTOOL, "test", "rules", tmp_path / "tests.yml")


# ---------------------------------------------------------------------------------------------- Grafana

def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "cds.json").read_text())


def test_dashboard_queries_reference_real_metrics():
    d, catalog = dashboard(), metric_catalog()
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["definition"])
              for v in d["templating"]["list"] if v["type"] == "query"]
    problems = [p for e in exprs for p in check_expr(e, catalog)]
    assert not problems, problems
    shown = {n for e in exprs for n, _ in promql_refs(e)[0]}
    families = {n for n in catalog if n.startswith("cds_") and not n.endswith(("_created", "_sum", "_count"))}
    assert not families - shown, f"metrics of cds/metrics.py not on the dashboard: {sorted(families - shown)}"


def test_dashboard_layout_and_datasource():
    d = dashboard()
    assert d["uid"] and d["title"]
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in d["templating"]["list"])
    cells: dict[tuple[int, int], str] = {}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        for cell in ((x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])):
            assert cell not in cells, f"{p['title']} overlaps {cells[cell]}"
            cells[cell] = p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


def test_grafana_provisioning_matches_the_compose_stack():
    prov = DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"].split("//")[1].split(":")[0] in compose()["services"]
    provider = yaml.safe_load((prov / "dashboards" / "cds.yml").read_text())["providers"][0]
    mounts = dict(v.split(":")[:2] for v in compose()["services"]["grafana"]["volumes"] if v.startswith("."))
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
