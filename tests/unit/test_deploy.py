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
    for name in ("segue-1", "segue-2"):
        s = {**services["segue-1"], **services[name]}
        cmd = " ".join(s["command"].split())
        assert "segue run --brokers kafka:9092" in cmd and "--journeys /app/journeys" in cmd
        assert "--addresses segue-1:2101,segue-2:2101" in cmd
        assert f"--process-id {int(name[-1]) - 1}" in cmd
        assert s["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    topics = services["topics"]["command"][0]
    from models.settings import Settings
    from segue.broker import topic_specs

    for t in topic_specs(Settings()):  # every topic Segue itself would create
        assert re.search(rf"\s{re.escape(t.removeprefix('segue.'))}[\s;]", topics), t
    for vol in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        assert (ROOT / vol.split(":")[0]).exists(), vol


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
        assert panel["datasource"]["uid"] == "prometheus"
        for target in panel["targets"]:
            used |= set(re.findall(r"\bsegue_[a-z_]+", target["expr"]))
    assert used, "the dashboard shows nothing"
    # Histograms export _bucket/_count/_sum; counters export _total.
    missing = {m for m in used if m not in exported}
    assert not missing, missing
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
                        .read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
