"""packaging/prometheus and packaging/grafana: the alerting rules are valid and fire
when they should (promtool, from Debian's prometheus package), and they and the
dashboard ask only for series the daemon exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from imgwatch.daemon.metrics import Metrics
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "packaging" / "prometheus" / "imgwatch.rules.yml"
RULE_TESTS = ROOT / "packaging" / "prometheus" / "imgwatch.rules.test.yml"
DASHBOARD = ROOT / "packaging" / "grafana" / "imgwatch-dashboard.json"
# Where scripts/test unpacks promtool when it is not installed.
UNPACKED = ROOT / ".cache" / "prometheus" / "usr" / "bin" / "promtool"


def promtool() -> str:
    path = shutil.which("promtool") or (str(UNPACKED) if UNPACKED.exists() else None)
    if path is None:
        why = "promtool is missing (Debian package prometheus; scripts/test unpacks it)"
        if IN_CI:
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    return path


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_rules_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_each_alert_fires_when_it_should_and_not_before() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_seen_firing_in_the_rule_tests() -> None:
    alerts = {rule["alert"] for rule in rules()}
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == alerts
    # What the issue asks to be alerted on, by name.
    assert {
        "ImgwatchUploadsPaused",
        "ImgwatchDatabaseDown",
        "ImgwatchUploadsFailing",
        "ImgwatchFilesFailing",
        "ImgwatchNotWatching",
        "ImgwatchNoRecentReconcile",
        "ImgwatchDeletionsHeld",
    } <= alerts
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def exported_series() -> set[str]:
    """The sample names a scrape of the daemon carries, WordPress on."""
    metrics = Metrics()
    metrics.watch(
        queue_depth=lambda: 0,
        database_up=lambda: True,
        watching=lambda: True,
        deletions_held=lambda: 0,
        wordpress_paused=lambda: None,
        reconcile_interval=3600.0,
    )
    metrics.rows_written([])
    metrics.upload_done("done", 1.0)  # the labelled series appear once counted
    metrics.files.labels("recorded", "").inc()
    metrics.reconciles.labels("startup").inc()
    metrics.text_updates.labels("updated").inc()
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def asked_for(expr: str) -> set[str]:
    return set(re.findall(r"\bimgwatch_[a-z_]+", expr))


def test_the_rules_and_the_dashboard_ask_only_for_series_the_daemon_exports() -> None:
    series = exported_series()
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [rule["expr"] for rule in rules()] + [
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
    ]
    unknown = {name for expr in exprs for name in asked_for(expr)} - series
    assert unknown == set()
    # A rename in the daemon shows here: everything it exports has a panel or a rule.
    shown = {name for expr in exprs for name in asked_for(expr)}
    assert {s.removesuffix("_bucket") for s in series if s.startswith("imgwatch_")} - {
        s.removesuffix("_bucket") for s in shown
    } <= {"imgwatch_upload_duration_seconds_sum", "imgwatch_upload_duration_seconds_count"}


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "imgwatch" and dashboard["title"] == "imgwatch"
    # Imported, Grafana asks which Prometheus to use for this input.
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert panel["targets"] and all(
            'instance=~"$instance"' in t["expr"] for t in panel["targets"]
        )
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
