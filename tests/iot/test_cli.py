"""``flask iot ...``: greenhouses, devices, credentials, quarantine list and replay."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from iot import broker_access, registry
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
    files = tmp_path / "broker"
    result = runner.invoke(args=["iot", "device", "credentials", "dev1", "--broker-dir", str(files)])
    assert result.exit_code == 0, result.output
    password = result.output.split("password: ")[1].split()[0]
    line = (files / "devices.passwd").read_text().strip()
    assert line.startswith("dev1:$7$101$") and password not in line
    assert "user dev1\ntopic write farm/GH1/dev1/#" in (files / "devices.acl").read_text()
    assert (files / "devices.passwd").stat().st_mode & 0o777 == 0o600


def test_service_users_are_kept_when_device_credentials_are_written(runner, session, tmp_path):
    """Defect 4: the hand-added ingester user was deleted by the next device's credentials."""
    gh = registry.create_greenhouse(session, "GH1", "One")
    registry.create_device(session, "dev1", gh)
    registry.create_device(session, "dev2", gh)
    session.commit()
    files = tmp_path / "broker"
    result = runner.invoke(
        args=[
            "iot",
            "broker",
            "user",
            "add",
            "tianyuan-ingester",
            "--role",
            "ingester",
            "--broker-dir",
            str(files),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "password: " in result.output
    assert (
        runner.invoke(args=["iot", "device", "credentials", "dev1", "--broker-dir", str(files)]).exit_code
        == 0
    )
    assert (
        runner.invoke(args=["iot", "device", "credentials", "dev2", "--broker-dir", str(files)]).exit_code
        == 0
    )
    services = (files / "services.passwd").read_text()
    assert services.startswith("tianyuan-ingester:$7$") and "dev1" not in services
    devices = (files / "devices.passwd").read_text()
    assert "dev1:" in devices and "dev2:" in devices and "ingester" not in devices
    acl = (files / "services.acl").read_text()
    assert "user tianyuan-ingester\ntopic read farm/#\ntopic read tele/#\ntopic write farm/+/alerts" in acl

    # a user added by hand (mosquitto_passwd) is never dropped silently: refused, then imported
    with (files / "services.passwd").open("a") as f:
        f.write("legacy:$7$101$c2FsdA==$aGFzaA==\n")
    refused = runner.invoke(args=["iot", "broker", "files", "--broker-dir", str(files)])
    assert refused.exit_code == 1 and "legacy (services.passwd) would lose their login" in refused.output
    assert "legacy:" in (files / "services.passwd").read_text()
    imported = runner.invoke(
        args=[
            "iot", "broker", "user", "import", "legacy", "--role", "publisher",
            "--from", str(files / "services.passwd"), "--broker-dir", str(files),
        ]
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    assert "legacy:$7$101$c2FsdA==$aGFzaA==" in (files / "services.passwd").read_text()
    assert "user legacy\ntopic write farm/+/alerts" in (files / "services.acl").read_text()
    listed = runner.invoke(args=["iot", "broker", "user", "list"]).output
    assert "legacy" in listed and "publisher" in listed and "tianyuan-ingester" in listed

    # refusals are messages, not tracebacks
    for args in (
        ["iot", "broker", "user", "add", "legacy", "--role", "ingester"],
        ["iot", "broker", "user", "add", "dev1", "--role", "ingester"],
        ["iot", "broker", "user", "add", "bad/name", "--role", "ingester"],
        ["iot", "broker", "user", "password", "nobody"],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 1 and result.output.startswith("Error: "), result.output
    # removing a user drops that one; another unknown one still stops the files being written
    with (files / "services.passwd").open("a") as f:
        f.write("other:$7$101$c2FsdA==$aGFzaA==\n")
    result = runner.invoke(args=["iot", "broker", "user", "remove", "legacy", "--broker-dir", str(files)])
    assert (
        result.exit_code == 1
        and "other (services.passwd)" in result.output
        and "legacy (" not in result.output
    )
    dropped = runner.invoke(args=["iot", "broker", "files", "--broker-dir", str(files), "--drop-unknown"])
    assert dropped.exit_code == 0, dropped.output
    text = (files / "services.passwd").read_text()
    assert "legacy" not in text and "other" not in text and "tianyuan-ingester:" in text


def test_a_device_named_like_a_service_gets_no_login(runner, session):
    registry.create_device(session, "tianyuan-ingester", None)
    session.commit()
    result = runner.invoke(args=["iot", "device", "credentials", "tianyuan-ingester"])
    assert result.exit_code == 1 and "cannot log in to the broker" in result.output


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


def test_writing_the_files_keeps_their_mode(session, tmp_path):
    files = tmp_path / "f"
    broker_access.write_broker_files(session, files)
    (files / "services.passwd").chmod(0o640)
    broker_access.add_service_user(session, "tianyuan-ingester", "ingester")
    broker_access.write_broker_files(session, files)
    assert (files / "services.passwd").stat().st_mode & 0o777 == 0o640
    assert "tianyuan-ingester:" in (files / "services.passwd").read_text()
    assert sorted(p.name for p in files.iterdir()) == sorted(broker_access.FILES)  # no temporary left
