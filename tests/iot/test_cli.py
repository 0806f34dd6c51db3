"""``flask iot ...``: greenhouses, devices, credentials, quarantine list and replay."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from iot import registry
from iot.ingest.writer import BatchWriter, Message
from iot.models import Device, Greenhouse, QuarantinedMessage, Reading


def test_greenhouse_and_device_commands(runner, session, make_user):
    make_user("zhaolin", "farmer")
    result = runner.invoke(
        args=[
            "iot",
            "greenhouse",
            "add",
            "GH7",
            "--name",
            "Grapes 7",
            "--owner",
            "zhaolin",
            "--crop",
            "grape",
            "--area",
            "800",
        ]
    )
    assert result.exit_code == 0, result.output
    gh = session.scalar(select(Greenhouse).where(Greenhouse.code == "GH7"))
    assert gh.name == "Grapes 7" and gh.owner_id is not None and gh.timezone == "Asia/Shanghai"

    assert runner.invoke(args=["iot", "greenhouse", "add", "GH7", "--name", "again"]).exit_code != 0
    assert (
        "no user"
        in runner.invoke(args=["iot", "greenhouse", "add", "GH8", "--name", "x", "--owner", "nobody"]).output
    )
    result = runner.invoke(
        args=["iot", "device", "add", "s-1", "--greenhouse", "GH7", "--kind", "controller"]
    )
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["iot", "device", "add", "bad/id", "--greenhouse", "GH7"]).exit_code != 0
    assert runner.invoke(args=["iot", "device", "add", "loose"]).exit_code == 0
    out = runner.invoke(args=["iot", "device", "list"]).output
    assert "s-1" in out and "GH7" in out and "controller" in out and "never" in out
    assert "(unassigned)" in runner.invoke(args=["iot", "device", "list", "--unassigned"]).output
    assert runner.invoke(args=["iot", "device", "assign", "loose", "--greenhouse", "GH7"]).exit_code == 0
    session.expire_all()
    assert session.scalar(select(Device.greenhouse_id).where(Device.device_id == "loose")) == gh.id
    assert "GH7" in runner.invoke(args=["iot", "greenhouse", "list"]).output


def test_device_credentials_write_broker_files(runner, session, tmp_path):
    gh = registry.create_greenhouse(session, "GH1", "One")
    registry.create_device(session, "dev1", gh)
    session.commit()
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    result = runner.invoke(
        args=["iot", "device", "credentials", "dev1", "--passwd-file", str(passwd), "--acl-file", str(acl)]
    )
    assert result.exit_code == 0, result.output
    password = result.output.split("password: ")[1].split()[0]
    line = passwd.read_text().strip()
    assert line.startswith("dev1:$7$101$") and password not in line
    assert "user dev1\ntopic write farm/GH1/dev1/#" in acl.read_text()


def test_quarantine_list_and_replay(runner, session, app):
    gh = registry.create_greenhouse(session, "GH1", "One")
    session.commit()
    writer = BatchWriter(session.get_bind())
    now = time.time()
    writer.store(
        [
            Message("farm/GH1/late/telemetry", json.dumps({"ts": int(now) - 60, "co2": 500}).encode(), now),
            Message("farm/GH1/late/telemetry", b"{oops", now),
        ]
    )
    out = runner.invoke(args=["iot", "quarantine", "list"]).output
    assert "unknown_device=2" in out and "farm/GH1/late/telemetry" in out and "{oops" in out

    registry.create_device(session, "late", gh)
    session.commit()
    result = runner.invoke(args=["iot", "quarantine", "replay"])
    assert result.exit_code == 0, result.output
    assert "replay 2/2" in result.output and "1 readings stored, 1 messages still failing" in result.output
    session.expire_all()
    assert session.scalar(select(Reading.value)) == 500
    rows = session.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)).all()
    assert (
        rows[0].replayed_at is not None and rows[1].replayed_at is None and rows[1].reason == "malformed_json"
    )
    out = runner.invoke(args=["iot", "quarantine", "list"]).output
    assert "unknown_device" not in out and "malformed_json=1" in out  # the next cause to fix
