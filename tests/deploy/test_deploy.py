"""Deployment artefacts: the Helm chart, the Dockerfile, the compose stack and the example env files,
checked without Docker or a cluster (helm lint/template + kubernetes-validate, a replay of the image build in a
clean venv, the Compose specification schema). Monitoring artefacts: tests/deploy/test_deploy_monitoring.py.
"""

from __future__ import annotations

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
from tests.deploy_tools import (CHART, COMPOSE_SCHEMA, DEPLOY, HELM, KUBE_VALIDATE, REPO, compose, need, run)

PROD_VALUES = CHART / "values-production.yaml"
KUBE_VERSION = "1.31.0"
CRD_KINDS = {"ServiceMonitor", "PodMonitor"}   # kubernetes-validate has schemas for built-in kinds only
SEED = base64.b64encode(bytes(range(32))).decode()


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
    from cds.cli.main import build_parser
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
    c = idx["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["indexer"]
    # `cds indexer` serves its probes and /metrics on CDS_INDEXER_PORT: the container port the probes use
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "metrics"}
    env = {**env_of(docs), **{e["name"]: e["value"] for e in c["env"]}}
    settings = load_settings({k: v for k, v in env.items() if k in env_names()})
    assert settings.indexer_port == ports["metrics"] and settings.indexer_host == "0.0.0.0"
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


def test_static_registry_records_are_mounted_where_the_setting_points():
    record = {"subscriber_id": "bap.example", "key_id": "k1", "type": "BAP", "domain": "beckn.one:deg:ev-charging",
              "url": "https://bap.example/beckn", "signing_public_key": "AAAA", "status": "SUBSCRIBED",
              "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"}
    docs = render("--set-json", f"registry.records={json.dumps([record])}")
    path = Path(env_of(docs)["CDS_REGISTRY_FILE"])
    cm = one(docs, "ConfigMap", "-registry")
    assert json.loads(cm["data"][path.name]) == [record]
    spec = one(docs, "Deployment", "-api")["spec"]["template"]["spec"]
    vol = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"])
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == vol["name"])
    assert Path(mount["mountPath"]) == path.parent


def test_persistence_uses_a_claim_and_recreate():
    docs = render("--set", "persistence.enabled=true", "--set", "persistence.size=20Gi")
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    dep = one(docs, "Deployment", "-api")
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    data = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_network_policy():
    docs = render(*VARIANTS["production"])
    np_ = one(docs, "NetworkPolicy")["spec"]
    selected = np_["podSelector"]["matchExpressions"][0]["values"]
    assert set(selected) == {"api", "indexer", "index-init"}
    assert [p["port"] for p in np_["ingress"][0]["ports"]] == ["http"]
    sources = np_["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cds", "app.kubernetes.io/instance": "cds",
                                            "app.kubernetes.io/component": "test"}}} in sources
    public = next(r for r in np_["egress"] if "to" in r and "ipBlock" in r["to"][0])
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(public["to"][0]["ipBlock"]["except"])
    assert {p["port"] for p in public["ports"]} == {443, 80}


def test_servicemonitor_scrapes_the_api_service_as_job_cds():
    docs = render(*VARIANTS["production"])
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "cds"   # the job the alert rules select
    # the indexer pods (no Service) are scraped by a PodMonitor under the same job
    pm, idx = one(docs, "PodMonitor"), one(docs, "Deployment", "-indexer")
    pod = idx["spec"]["template"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"][pm["spec"]["jobLabel"]] == "cds"
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert [(e["port"], e["path"]) for e in pm["spec"]["podMetricsEndpoints"]] == [("metrics", "/metrics")]
    assert "metrics" in ports
    metrics_rule = next(r for r in one(docs, "NetworkPolicy")["spec"]["ingress"]
                        if [p["port"] for p in r["ports"]] == ["metrics"])
    assert metrics_rule["from"] == yaml.safe_load(PROD_VALUES.read_text())["networkPolicy"]["ingressFrom"]


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
    from cds.cli.main import build_parser
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
        "r.files('cds.demo.data').joinpath('ubc_example_publish.json').read_bytes(); "
        "from cds.demo.generator import generate_network; generate_network(20, seed=1)", env=clean, cwd=tmp_path)


# ------------------------------------------------------------------------------------------------ Compose

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
    from cds.cli.main import build_parser
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
