"""The workers are plain processes: they import without Flask, have ``python -m`` entry points,
build their MQTT clients in one place, and the alert checker opens a fresh session per tick."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from core.config import PROJECT_ROOT
from iot import check_alerts
from iot.models import AlertRule
from tests.iot.dash_helpers import make_greenhouse

WORKERS = ("iot.ingest", "iot.check_alerts", "iot.simulate")


def test_workers_import_without_flask():
    modules = ", ".join(
        ["iot.ingest.__main__", "iot.ingest.mqtt", "iot.ingest.process", "iot.check_alerts", "iot.simulate"]
    )
    code = f"import sys, {modules}; assert 'flask' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("module", WORKERS)
def test_workers_have_a_command_line(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"python -m {module}" in done.stdout


def test_one_place_builds_paho_clients():
    """Every paho client in iot/ comes from iot.mqtt_client.make_client."""
    offenders = []
    for path in sorted((PROJECT_ROOT / "iot").rglob("*.py")):
        if path.name == "mqtt_client.py":
            continue
        text = path.read_text()
        if re.search(r"\bClient\(|CallbackAPIVersion", text):
            offenders.append(str(path.relative_to(PROJECT_ROOT)))
    assert offenders == []


def test_alert_checker_opens_a_fresh_session_per_tick(app, session, settings):
    from core.web import EXT

    gh, dev = make_greenhouse(session)
    dev.last_seen_at = datetime(2020, 1, 1, tzinfo=UTC)
    session.add(AlertRule(greenhouse_id=gh.id, kind="offline", duration_s=900))
    session.commit()
    factory = app.extensions[EXT]["db"].session_factory
    opened: list = []

    def counting_factory():
        s = factory()
        opened.append(s)
        return s

    lines: list[str] = []
    ticks = check_alerts.run(
        settings, every=0.01, mqtt=False, session_factory=counting_factory, echo=lines.append, ticks=3
    )
    assert ticks == 3 and len(opened) == 3 and len({id(s) for s in opened}) == 3
    assert all(not s.in_transaction() for s in opened)  # each one committed and closed
    assert lines == ["1 alerts opened or closed", "0 alerts opened or closed", "0 alerts opened or closed"]


def test_alert_checker_runs_once_from_its_command_line(settings, session):
    env = {
        "DATABASE_URL": settings.database_url,
        "TIANYUAN_ENV": "testing",
        "TIANYUAN_INSTANCE_PATH": str(settings.instance_path),
        "SECRET_KEY": "test",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "iot.check_alerts", "--no-mqtt"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 alerts opened or closed"


def test_simulator_without_greenhouses_says_so(settings, session):
    env = {
        "DATABASE_URL": settings.database_url,
        "TIANYUAN_ENV": "testing",
        "TIANYUAN_INSTANCE_PATH": str(settings.instance_path),
        "SECRET_KEY": "test",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "iot.simulate", "--count", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no greenhouses" in done.stderr
