"""deploy/: promtool on the Prometheus config and rules, and consistency of the dashboard, k8s and Docker files."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from apudae.service.metrics import ServiceMetrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "apudae.yml"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (Debian package 'prometheus'; .ci/run installs it)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=DEPLOY / "prometheus")


def exported_names() -> set[str]:
    """Every sample name the service exports (counters with _total, histograms with _bucket/_sum/_count)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in ServiceMetrics().registry.collect() for suffix in suffixes[family.type]}


def rule_expressions() -> tuple[list[str], set[str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    return [rule["expr"] for rule in rules], {rule["record"] for rule in rules if "record" in rule}


def referenced(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\b(?:[a-z_]+:)?apudae_[a-z0-9_:]*", expr)}


@needs_promtool
def test_promtool_checks_the_config_and_rules():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass():
    result = promtool("test", "rules", "tests/apudae_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_and_dashboard_use_only_exported_metrics_or_recorded_rules():
    expressions, recorded = rule_expressions()
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "apudae.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    unknown = referenced(expressions) - exported_names() - recorded
    assert not unknown, f"names neither exported by the service nor recorded: {sorted(unknown)}"


def test_hpa_metric_is_the_one_prometheus_adapter_serves():
    hpa = yaml.safe_load((DEPLOY / "k8s" / "hpa.yaml").read_text())
    adapter = yaml.safe_load((DEPLOY / "k8s" / "prometheus-adapter-values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]} <= served


def test_deployment_has_probes_gpu_and_drain():
    pod = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "preStop" in container["lifecycle"] and pod["terminationGracePeriodSeconds"] > 40
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_docker_image_runs_as_a_non_root_user_with_a_healthcheck():
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert any("/healthz" in line for line in lines)


def test_compose_reserves_a_gpu_and_gates_on_health():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    devices = compose["apudae"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert compose["prometheus"]["depends_on"]["apudae"]["condition"] == "service_healthy"
    assert compose["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
