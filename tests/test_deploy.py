"""Deployment artefacts (issue 7): Helm chart, Dockerfile, compose stack, Prometheus rules, Grafana dashboard,
example env files and runbook, checked without Docker or a cluster.

External tools come from `bash scripts/tools.sh` (into ${CDS_CACHE_DIR:-.cache}/tools): helm, kubernetes-validate,
the Compose specification schema and, optionally, promtool. A test whose tool is missing skips loudly.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cds.config import env_names, load_settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CHART = REPO / "helm" / "cds"
PROD_VALUES = CHART / "values-production.yaml"
_cache = Path(os.environ.get("CDS_CACHE_DIR", ".cache"))
TOOLS = (_cache if _cache.is_absolute() else REPO / _cache) / "tools"
HELM = TOOLS / "bin" / "helm"
KUBE_VALIDATE = TOOLS / "bin" / "kubernetes-validate"
COMPOSE_SCHEMA = TOOLS / "compose-spec.json"
PROMTOOL = TOOLS / "bin" / "promtool"
KUBE_VERSION = "1.31.0"
CRD_KINDS = {"ServiceMonitor"}          # kubernetes-validate has schemas for built-in kinds only
SEED = base64.b64encode(bytes(range(32))).decode()


def need(tool: Path, what: str) -> Path:
    if not tool.exists():
        pytest.skip(f"!!!!! {what} NOT CHECKED: {tool} is missing. Run `bash scripts/tools.sh` first "
                    f"(scripts/test.sh does) !!!!!")
    return tool


def run(*cmd: str | Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


# ---------------------------------------------------------------------------------------------------- Helm

def helm_template(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(need(HELM, "HELM CHART"), "template", "cds", CHART, "--namespace", "cds",
               "--kube-version", KUBE_VERSION, *args, check=check)


def render(*args: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(helm_template(*args).stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


VARIANTS = {"default": (), "production": ("-f", str(PROD_VALUES))}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(*VARIANTS[request.param])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_strict(variant):
    out = run(need(HELM, "HELM CHART"), "lint", "--strict", CHART, *VARIANTS[variant]).stdout
    assert "0 chart(s) failed" in out


def test_rendered_manifests_pass_kubernetes_schema(rendered, tmp_path):
    name, docs = rendered
    kv = need(KUBE_VALIDATE, "KUBERNETES SCHEMA VALIDATION")
    builtin = [d for d in docs if d["kind"] not in CRD_KINDS]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    p = run(kv, "--strict", "-k", KUBE_VERSION, path, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("passed") == len(builtin)


def test_schema_validation_catches_a_broken_manifest(tmp_path):
    """The validation above can fail: a misspelt field in the rendered API Deployment is rejected."""
    kv = need(KUBE_VALIDATE, "KUBERNETES SCHEMA VALIDATION")
    dep = one(render(), "Deployment", "-api")
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/x", "port": 1}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(dep))
    assert run(kv, "--strict", "-k", KUBE_VERSION, path, check=False).returncode != 0


def test_rendered_kinds():
    default = {d["kind"] for d in render()}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "ServiceAccount"} <= default
    assert not default & {"HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "ServiceMonitor", "Job"}
    prod = render(*VARIANTS["production"])
    kinds = {d["kind"] for d in prod}
    assert {"HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "ServiceMonitor", "Job"} <= kinds
    assert {d["metadata"]["name"] for d in by_kind(prod, "Deployment")} == {"cds-api", "cds-indexer"}
    assert not by_kind(prod, "Secret"), "existingSecret is set: the chart must not create a Secret"


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((d["metadata"]["name"], d["spec"]))
    return out


def test_pods_are_locked_down(rendered):
    _, docs = rendered
    for name, spec in pod_specs(docs):
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if c["name"] != "ready":        # the helm test pod writes nothing
                for path in ("/data", "/tmp"):
                    vol = volumes[mounts[path]]
                    assert "emptyDir" in vol or "persistentVolumeClaim" in vol, (name, path)


def test_api_probes_and_port(rendered):
    _, docs = rendered
    c = one(docs, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert c["args"][:1] == ["serve"] and c["args"][c["args"].index("--port") + 1] == str(ports["http"])
    from cds.cli import build_parser
    assert build_parser().parse_args(c["args"]).port == ports["http"]


def env_of(docs: list[dict], secret_values: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(one(docs, "ConfigMap", "cds")["data"])
    for s in by_kind(docs, "Secret"):
        env.update({k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()})
    env.update(secret_values or {})
    return env


def test_rendered_settings_load(rendered):
    """What the chart puts into the environment is a configuration the service accepts."""
    name, docs = rendered
    env = env_of(docs, {"CDS_SIGNING_PRIVATE_KEY": SEED} if name == "production" else None)
    assert set(env) <= set(env_names()), set(env) - set(env_names())
    settings = load_settings(env)
    assert settings.data_dir == "/data"
    if name == "production":
        assert settings.es_url and settings.es_ca_certs == "/etc/cds/es-ca/ca.crt"
        assert settings.registry_type == "dedi" and settings.subscriber_url == "https://cds.example.org/beckn"
        assert settings.catalog_max_age_s == 604800


def test_secrets_go_to_the_secret_only():
    docs = render("--set", f"secrets.signingPrivateKey={SEED}", "--set", "secrets.esPassword=pw-123",
                  "--set", "elasticsearch.url=http://es:9200", "--set", "secrets.esUsername=cds")
    cm = one(docs, "ConfigMap", "cds")
    assert SEED not in json.dumps(cm) and "pw-123" not in json.dumps(cm)
    env = env_of(docs)
    assert env["CDS_SIGNING_PRIVATE_KEY"] == SEED and env["CDS_ES_PASSWORD"] == "pw-123"
    api = one(docs, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "cds"}} in api["envFrom"]
    # the index-init hook gets the Elasticsearch credentials only, never the signing key
    hook_secret = one(docs, "Secret", "-index-init")
    assert set(hook_secret["data"]) == {"CDS_ES_USERNAME", "CDS_ES_PASSWORD"}
    assert "pre-install" in hook_secret["metadata"]["annotations"]["helm.sh/hook"]


def test_existing_secret_is_referenced_not_created():
    docs = render("--set", "secrets.existingSecret=my-secret")
    assert not by_kind(docs, "Secret")
    api = one(docs, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "my-secret"}} in api["envFrom"]
    p = helm_template("--set", "secrets.existingSecret=my-secret", "--set", f"secrets.signingPrivateKey={SEED}",
                      check=False)
    assert p.returncode != 0 and "not both" in p.stderr


def test_indexer_only_with_redis():
    assert not [d for d in render() if d["metadata"]["name"].endswith("-indexer")]
    docs = render("--set", "redis.url=redis://redis:6379/0", "--set", "indexer.replicaCount=3")
    idx = one(docs, "Deployment", "-indexer")
    assert idx["spec"]["replicas"] == 3
    assert idx["spec"]["template"]["spec"]["containers"][0]["args"] == ["indexer"]
    assert env_of(docs)["CDS_REDIS_URL"] == "redis://redis:6379/0"
    docs = render("--set", "redis.url=redis://redis:6379/0", "--set", "indexer.enabled=false")
    assert not [d for d in docs if d["metadata"]["name"].endswith("-indexer")]


def test_embedded_index_refuses_several_replicas():
    for args in (("--set", "api.replicaCount=2"), ("--set", "api.autoscaling.enabled=true")):
        p = helm_template(*args, check=False)
        assert p.returncode != 0 and "embedded index" in p.stderr, p.stderr
    docs = render("--set", "api.replicaCount=2", "--set", "elasticsearch.url=http://es:9200")
    assert one(docs, "Deployment", "-api")["spec"]["replicas"] == 2


def test_index_init_hook():
    assert not by_kind(render(), "Job")
    docs = render("--set", "elasticsearch.url=http://es:9200")
    job = one(docs, "Job", "-index-init")
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["index", "init"]
    # a pre-install hook runs before the release's ConfigMap exists: its settings must be inline
    assert {e["name"]: e["value"] for e in c["env"]}["CDS_ES_URL"] == "http://es:9200"
    assert "envFrom" not in c


def test_servicemonitor_scrapes_the_api_service_as_job_cds():
    docs = render(*VARIANTS["production"])
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "cds"   # the job the alert rules select


def test_values_documented_in_chart_readme():
    """Every values key has a row in the README table. A row documents its key and everything below it; in
    a cell such as `api.podAnnotations` / `podLabels` a bare name shares the dotted name's parent."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = set()
    for line in (CHART / "README.md").read_text().splitlines():
        if line.startswith("|"):
            parent = ""
            for key in re.findall(r"`([A-Za-z][\w.]*)`", line.split("|")[1]):
                if "." in key:
                    parent = key.rsplit(".", 1)[0] + "."
                    documented.add(key)
                else:
                    documented.add(parent + key)

    def covered(path: str) -> bool:
        return any(path == d or path.startswith(d + ".") or d.startswith(path + ".") for d in documented)

    missing = []
    for key, val in values.items():
        if key in documented:
            continue
        paths = [f"{key}.{k}" for k in val] if isinstance(val, dict) else [key]
        missing += [p for p in paths if not covered(p)]
    assert not missing, f"values not in the helm/cds/README.md table: {missing}"


# --------------------------------------------------------------------------------------------- Dockerfile

def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[[(INSTRUCTION, args), ...] per stage], with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        stages[-1].append((instr.upper(), args.strip()))
    return stages[1:]


def test_dockerfile_final_stage():
    builder, final = dockerfile_stages()
    assert builder[0][1].endswith("AS builder")
    instrs = {i for i, _ in final}
    text = " ".join(a for _, a in final)
    assert "RUN" not in instrs or not re.search(r"apt-get|apk |gcc|build-essential|pip install", text)
    copies = [a for i, a in final if i == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the final image gets the venv and nothing else"
    user = [a for i, a in final if i == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["cds"]
    cmd = json.loads(dict(final)["CMD"])
    assert cmd == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    from cds.cli import build_parser
    assert build_parser().parse_args(cmd).port == int(dict(final)["EXPOSE"])
    assert "CDS_DATA_DIR=/data" in dict(final)["ENV"] and json.loads(dict(final)["VOLUME"]) == ["/data"]
    for src in (a.split()[:-1] for i, a in builder if i == "COPY"):
        for s in src:
            assert (REPO / s).exists(), s


def healthcheck_command() -> list[str]:
    hc = dict(dockerfile_stages()[-1])["HEALTHCHECK"]
    return json.loads(hc[hc.index("CMD") + 3:].strip())


async def test_dockerfile_healthcheck_probes_the_real_live_endpoint(cds):
    cmd = healthcheck_command()
    assert cmd[0] == "python" and "/health/live" in cmd[-1]

    async def probe(port: int) -> int:
        env = {**os.environ, "CDS_PORT": str(port)}
        p = await asyncio.create_subprocess_exec(sys.executable, *cmd[1:], env=env,
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return await p.wait()

    assert await probe(cds.server.port) == 0
    import socket
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert await probe(closed) != 0


@pytest.mark.slow
def test_dockerfile_builder_stage_replayed_in_a_clean_venv(tmp_path):
    """Replays the builder stage's ENV/WORKDIR/COPY/RUN steps (container paths relocated under tmp_path),
    then runs the installed console script the way the final image does."""
    root = tmp_path / "root"
    # keep PIP_* (package index set-up of this machine and CI); drop what ties pip to our own venv
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"     # `python` = this interpreter
    workdir = root
    builder = dockerfile_stages()[0]
    for instr, args in builder:
        if instr == "ENV":
            for tok in shlex.split(args):
                k, _, v = tok.partition("=")
                env[k] = str(root) + v if v.startswith("/") else v
        elif instr == "WORKDIR":
            workdir = root / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instr == "COPY":
            *srcs, dest = args.split()
            for s in srcs:
                target = workdir / dest / (Path(s).name if dest.endswith("/") else "")
                if (REPO / s).is_dir():
                    shutil.copytree(REPO / s, workdir / dest, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(REPO / s, target)
        elif instr == "RUN":
            p = subprocess.run(["bash", "-euo", "pipefail", "-c", args], cwd=workdir, env=env,
                               capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, f"RUN {args}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    venv = Path(env["VIRTUAL_ENV"])
    bindir = venv / "bin"
    assert not (bindir / "pip").exists(), "pip must not be shipped in the final venv"
    clean = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "CDS_DATA_DIR": str(tmp_path / "data")}
    help_ = run(bindir / "cds", "--help", env=clean).stdout
    assert all(c in help_ for c in ("serve", "indexer", "keygen", "index"))
    out = run(bindir / "python", "-m", "cds", "keygen", env=clean).stdout
    kv = dict(line.split("=", 1) for line in out.split())
    from nacl.signing import SigningKey
    assert base64.b64encode(bytes(SigningKey(base64.b64decode(kv["signing_private_key"])).verify_key)).decode() \
        == kv["signing_public_key"]
    # package data the demo needs is in the wheel
    run(bindir / "python", "-c", "from importlib import resources as r; "
        "r.files('cds.demo_data').joinpath('ubc_example_publish.json').read_bytes(); "
        "from loadtests.generator import generate_network; generate_network(20, seed=1)", env=clean, cwd=tmp_path)


# ------------------------------------------------------------------------------------------------ Compose

def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def compose_validator():
    import jsonschema

    schema = json.loads(need(COMPOSE_SCHEMA, "COMPOSE SPECIFICATION").read_text())
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")  # spelt with a "#": not auto-detected
    # No format checker: the spec's "duration" format is Go's ("10s"), not ISO 8601.
    return jsonschema.Draft201909Validator(schema)


def test_compose_validates_against_the_compose_spec():
    v = compose_validator()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(compose())]
    assert not errors, errors
    broken = compose()
    broken["services"]["api"]["helthcheck"] = {"test": ["CMD", "true"]}
    assert not v.is_valid(broken), "the schema must reject unknown service keys"


def test_compose_stack():
    c = compose()
    services = c["services"]
    assert {"api", "indexer", "elasticsearch", "redis", "prometheus", "grafana"} <= set(services)
    assert len([s for s in services if s.startswith("bpp-")]) == 2
    from cds.cli import build_parser
    parser = build_parser()
    for name, svc in services.items():
        if svc.get("image") == services["api"]["image"]:
            parser.parse_args(svc["command"])                  # a real `cds` invocation
            env_file = DEPLOY / svc["env_file"]
            assert env_file.exists(), env_file
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            assert src in c["volumes"] if not src.startswith(".") else (DEPLOY / src).exists(), (name, vol)
    assert services["api"]["command"][0] == "serve" and services["indexer"]["command"] == ["indexer"]
    assert services["index-init"]["command"] == ["index", "init"]
    build = services["api"]["build"]
    assert (DEPLOY / build["context"]).resolve() == REPO and (REPO / build["dockerfile"]).samefile(DEPLOY / "Dockerfile")
    env = dict(l.split("=", 1) for l in (DEPLOY / "examples" / "compose.env").read_text().splitlines()
               if l and not l.startswith("#"))
    assert env["CDS_ES_URL"].split("//")[1].split(":")[0] in services
    assert env["CDS_REDIS_URL"].split("//")[1].split(":")[0] in services


def env_file_values(path: Path) -> tuple[dict[str, str], set[str]]:
    """(uncommented assignments, every CDS_* name mentioned, commented or not)."""
    text = path.read_text()
    values = dict(l.split("=", 1) for l in text.splitlines() if re.match(r"^[A-Z_]+=", l))
    return values, set(re.findall(r"\b(CDS_[A-Z_]+)=", text))


@pytest.mark.parametrize("name", sorted(p.name for p in (DEPLOY / "examples").glob("*.env")))
def test_example_env_files_are_valid(name):
    values, mentioned = env_file_values(DEPLOY / "examples" / name)
    known = set(env_names()) | {"CDS_HOST", "CDS_PORT"}      # the CLI reads these two for `cds serve`
    assert mentioned <= known, mentioned - known
    load_settings(values)
    if name == "production.env":
        assert set(env_names()) <= mentioned, set(env_names()) - mentioned


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


# Referenced before it exists: the fan-out work (issue #6) adds it; see the comment in alerts.yml.
FUTURE_METRICS = {"cds_fanout_circuit_open": {"bpp_id"}}
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
    catalog = metric_catalog() | FUTURE_METRICS
    problems = [p for r in alert_rules() for p in check_expr(r["expr"], catalog)]
    assert not problems, problems
    exprs = " ".join(r["expr"] for r in alert_rules())
    for needle in ('cds_callbacks_total{job="cds",outcome="failed"}', "cds_index_freshness_lag_seconds",
                   "cds_ingest_pending", 'cds_requests_total{job="cds",outcome="error"}', "cds_fanout_circuit_open",
                   'up{job="cds"} == 0'):
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

    def fired(alert, labels, **fmt):
        return {"exp_labels": labels, "exp_annotations": {k: v.replace("{{ $labels.action }}", labels.get("action", ""))
                                                          .replace("{{ $labels.instance }}", labels.get("instance", ""))
                                                          .replace("{{ $labels.bpp_id }}", labels.get("bpp_id", ""))
                                                          .replace("{{ $value | humanizePercentage }}", fmt.get("pct", ""))
                                                          .replace("{{ $value | humanizeDuration }}", fmt.get("dur", ""))
                                                          .replace("{{ $value }}", fmt.get("value", ""))
                                                          for k, v in ann[alert].items()}}

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
         ]},
        {"interval": "1m",
         "input_series": [
             {"series": f"cds_ingest_pending{{{a}}}", "values": "5x40"},
             {"series": f'cds_publish_catalogs_total{{{a},status="ACCEPTED"}}', "values": "0+1x40"},
             {"series": f"cds_index_freshness_lag_seconds{{{a}}}", "values": "2000x40"},
             {"series": f'cds_requests_total{{{a},action="discover",outcome="ack"}}', "values": "0+98x40"},
             {"series": f'cds_requests_total{{{a},action="discover",outcome="error"}}', "values": "0+2x40"},
             {"series": f'cds_fanout_circuit_open{{{a},bpp_id="bpp.example"}}', "values": "1x40"},
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
              "exp_alerts": [fired("CDSFanoutCircuitOpen", {"severity": "warning", "bpp_id": "bpp.example"})]},
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
