"""The docker-compose stack cannot run here (no Docker engine); its files are checked instead:
the compose file's shape, Prometheus scraping every Segue process on its metrics port, and a
Grafana dashboard that references only metrics Segue really exports."""

import json
import re

import yaml

import flows.metrics  # noqa: F401 - registers Segue's metrics
from tests.conftest import ROOT


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_full_stack_with_two_segue_processes():
    c = compose()
    services = c["services"]
    assert {"kafka", "topics", "segue-1", "segue-2", "simulator", "prometheus", "grafana"} <= set(
        services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    assert "healthcheck" in services["kafka"]
    state_volumes = set()
    for name in ("segue-1", "segue-2"):
        s = {**services["segue-1"], **services[name]}
        cmd = " ".join(s["command"].split())
        # The image's entry point is `segue`: the command is its arguments.
        assert cmd.startswith("run --brokers kafka:9092") and "--journeys /app/journeys" in cmd
        assert "--addresses segue-1:2101,segue-2:2101" in cmd
        assert f"--process-id {int(name[-1]) - 1}" in cmd
        assert s["build"] == "." and s["image"] == "segue:local"  # built from ./Dockerfile
        assert s["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert s["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert "/opt/segue/healthcheck.py" in s["healthcheck"]["test"]
        state = [v for v in s["volumes"] if v.endswith(":/state")]
        assert len(state) == 1, s["volumes"]
        state_volumes.add(state[0].split(":")[0])
        assert not any(v.startswith(".:") for v in s["volumes"])  # no source mount
    # One store is opened by one process: each replica has a volume of its own.
    assert len(state_volumes) == 2 and state_volumes <= set(c["volumes"])
    for waiting in ("simulator", "prometheus"):
        deps = services[waiting]["depends_on"]
        assert {deps[n]["condition"] for n in ("segue-1", "segue-2")} == {"service_healthy"}
    assert services["simulator"]["image"] == "segue:local"
    topics = services["topics"]["command"][0]
    from models.settings import Settings
    from segue.broker import topic_specs

    specs = topic_specs(Settings())
    for t in specs:  # every topic Segue itself would create
        assert re.search(rf"\s{re.escape(t.removeprefix('segue.'))}[\s;]", topics) \
            or f"--topic {t} " in topics, t
    # Compacted where Segue compacts: the analytics totals.
    assert specs["segue.analytics"]["cleanup.policy"] == "compact"
    assert "--topic segue.analytics --partitions 8 --replication-factor 1 --config " \
        "cleanup.policy=compact" in " ".join(topics.replace("\\\n", " ").split())
    for vol in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        assert (ROOT / vol.split(":")[0]).exists(), vol


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_is_multi_stage_non_root_with_libgomp_and_a_healthcheck():
    steps = dockerfile()
    froms = [a for w, a in steps if w == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert all(f.startswith("python:3.11") for f in froms)
    runtime = steps[[i for i, (w, _) in enumerate(steps) if w == "FROM"][1]:]
    runs = " ".join(a for w, a in runtime if w == "RUN")
    assert "libgomp1" in runs and "--no-install-recommends" in runs  # LightGBM needs OpenMP
    assert "--no-index" in (ROOT / "deploy/docker/install.sh").read_text()  # wheels only
    assert "install-segue.sh /wheels" in runs and "from=build" in runs
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = [a for w, a in runtime if w == "HEALTHCHECK"]
    assert health and "/opt/segue/healthcheck.py" in health[0]
    assert ("ENTRYPOINT", '["segue"]') in runtime
    # What the build stage copies is what the build script packs.
    copied = {a.split()[0] for w, a in steps[:len(steps) - len(runtime)] if w == "COPY"}
    script = (ROOT / "deploy/docker/build-wheels.sh").read_text()
    packed = set(re.search(r"for part in ([^;]+);", script).group(1).split())
    assert packed <= copied | {"pyproject.toml", "README.md", "setup.py", "native-modules.txt"}
    from tomllib import loads

    find = loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.rstrip("*") for p in find["include"]} <= packed
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv*" in ignored and ".git" in ignored


def test_prometheus_scrapes_every_segue_process_on_its_metrics_port():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for sc in prom["scrape_configs"] for st in sc["static_configs"]
               for t in st["targets"]}
    services = compose()["services"]
    want = set()
    for name in ("segue-1", "segue-2"):
        cmd = services[name]["command"]
        port = re.search(r"--metrics-port (\d+)", cmd).group(1)
        want.add(f"{name}:{port}")
    assert targets == want


def test_dashboard_references_only_metrics_that_exist():
    from prometheus_client import REGISTRY

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",)}
    exported = {fam.name + sfx for fam in REGISTRY.collect() if fam.name.startswith("segue_")
                for sfx in suffixes.get(fam.type, ("",))}
    dash = json.loads((ROOT / "deploy/grafana/dashboards/segue.json").read_text())
    used = set()
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"  # the data source variable
        for target in panel["targets"]:
            used |= set(re.findall(r"\bsegue_[a-z_]+", target["expr"]))
            # Every series is narrowed to the chosen $job and $instance.
            for sel in re.findall(r"\bsegue_[a-z_]+(\{[^}]*\})?", target["expr"]):
                assert 'job=~"$job"' in sel and 'instance=~"$instance"' in sel, target
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert "segue_build_info" in variables["job"]["definition"]
    assert "segue_build_info" in variables["instance"]["definition"]
    assert used, "the dashboard shows nothing"
    # Histograms export _bucket/_count/_sum; counters export _total.
    missing = {m for m in used if m not in exported}
    assert not missing, missing
    used.add("segue_build_info")
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
                        .read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"


def test_alert_rules_read_metrics_segue_exports_and_prometheus_loads_them():
    from prometheus_client import REGISTRY

    exported = {fam.name + sfx for fam in REGISTRY.collect() if fam.name.startswith("segue_")
                for sfx in (("_total",) if fam.type == "counter" else ("",))}
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["alerts.yml"]
    mounted = compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounted
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    # What issue 19 asks for: lag growing, DLQ rate, channel failures, no events (and down).
    assert {"SegueInputLagGrowing", "SegueDeadLetterRate", "SegueChannelFailureRate",
            "SegueNoEvents", "SegueDown"} <= set(by_name)
    for name, rule in by_name.items():
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        names = set(re.findall(r"\bsegue_[a-z_]+", rule["expr"]))
        assert names <= exported, (name, names - exported)
        assert rule["expr"].count("(") == rule["expr"].count(")"), name
    assert 'result="dead_lettered"' in by_name["SegueDeadLetterRate"]["expr"]
    assert 'outcome="failed"' in by_name["SegueChannelFailureRate"]["expr"]


def test_every_process_exports_its_build_info():
    from prometheus_client import REGISTRY

    from segue import __version__

    info = [s for fam in REGISTRY.collect() if fam.name == "segue_build_info"
            for s in fam.samples]
    assert len(info) == 1 and info[0].value == 1
    assert info[0].labels["version"] == __version__ and info[0].labels["bytewax"] != "unknown"
