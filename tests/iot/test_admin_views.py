"""Greenhouse administration pages: admins register and assign, officials only look,
farmers and customers are kept out; quarantine can be reviewed and replayed."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from iot import registry
from iot.ingest.writer import BatchWriter, Message
from iot.models import Device, Greenhouse, QuarantinedMessage, Reading
from tests.conftest import csrf_token_from, login


@pytest.mark.parametrize(
    "role,status", [("admin", 200), ("official", 200), ("farmer", 403), ("customer", 403)]
)
def test_who_may_see_the_admin_pages(client, make_user, role, status):
    make_user("u1", role)
    login(client, "u1")
    for path in ("/iot/admin/", "/iot/admin/quarantine"):
        assert client.get(path).status_code == status


def test_admin_registers_greenhouse_and_device(client, make_user, session):
    make_user("boss", "admin")
    farmer = make_user("zhaolin", "farmer", display_name="赵林")
    login(client, "boss")
    r = client.post(
        "/iot/admin/greenhouses",
        data={
            "gh-code": "GH9",
            "gh-name": "Melons",
            "gh-owner": farmer.id,
            "gh-crop": "melon",
            "gh-area_m2": "750",
            "gh-timezone": "Asia/Shanghai",
        },
        follow_redirects=True,
    )
    html = r.get_data(as_text=True)
    assert "GH9" in html and "赵林" in html
    gh = session.scalar(select(Greenhouse).where(Greenhouse.code == "GH9"))
    assert gh.owner_id == farmer.id and gh.area_m2 == 750
    r = client.post(
        "/iot/admin/devices",
        data={"dev-device_id": "m-1", "dev-greenhouse": gh.id, "dev-kind": "controller", "dev-name": ""},
        follow_redirects=True,
    )
    assert "m-1" in r.get_data(as_text=True)
    session.expire_all()
    assert session.scalar(select(Device.greenhouse_id).where(Device.device_id == "m-1")) == gh.id
    # a bad code is refused with a message in the user's language, nothing created
    bad = {"gh-code": "a/b", "gh-name": "x", "gh-owner": 0, "gh-timezone": "Asia/Shanghai"}
    r = client.post("/iot/admin/greenhouses", data=bad, follow_redirects=True)
    assert "大棚编号须为 1–40 个字母" in r.get_data(as_text=True)
    r = client.post("/iot/admin/greenhouses?lang=en", data=bad, follow_redirects=True)
    assert "letters, digits" in r.get_data(as_text=True)
    assert session.scalar(select(Greenhouse).where(Greenhouse.code == "a/b")) is None


def test_official_sees_but_cannot_change(client, make_user, session):
    make_user("kuaiji", "official")
    gh = registry.create_greenhouse(session, "GH1", "One")
    registry.create_device(session, "d1", gh)
    session.commit()
    login(client, "kuaiji")
    html = client.get("/iot/admin/").get_data(as_text=True)
    assert "GH1" in html and "d1" in html and 'action="/iot/admin/devices"' not in html
    assert (
        client.post(
            "/iot/admin/devices", data={"dev-device_id": "x", "dev-greenhouse": 0, "dev-kind": "sensor"}
        ).status_code
        == 403
    )
    assert client.post("/iot/admin/devices/d1", data={"greenhouse": 0, "kind": "sensor"}).status_code == 403
    assert client.post("/iot/admin/quarantine/replay").status_code == 403


def test_assign_provisioned_device_then_replay_from_the_web(client, make_user, session):
    make_user("boss", "admin")
    gh = registry.create_greenhouse(session, "GH1", "One")
    session.commit()
    writer = BatchWriter(session.get_bind(), unknown_device_policy="provision")
    now = time.time()
    writer.store(
        [Message("farm/GH1/stray/telemetry", json.dumps({"ts": int(now) - 5, "co2": 444}).encode(), now)]
    )
    login(client, "boss")
    client.get("/lang/en")
    html = client.get("/iot/admin/").get_data(as_text=True)
    assert "stray" in html and "1 messages are in quarantine" in html
    page = client.get("/iot/admin/devices/stray").get_data(as_text=True)
    assert "auto-provisioned" in page and "Unassigned" in page
    r = client.post(
        "/iot/admin/devices/stray",
        data={"greenhouse": gh.id, "kind": "sensor", "name": "Found"},
        follow_redirects=True,
    )
    assert r.status_code == 200
    q = client.get("/iot/admin/quarantine").get_data(as_text=True)
    assert "farm/GH1/stray/telemetry" in q and 'data-reason="unassigned_device"' in q
    r = client.post("/iot/admin/quarantine/replay", follow_redirects=True)
    assert r.status_code == 200
    session.expire_all()
    assert session.scalar(select(Reading.value)) == 444
    assert session.scalar(select(QuarantinedMessage.replayed_at)) is not None
    assert "farm/GH1/stray/telemetry" not in client.get("/iot/admin/quarantine").get_data(as_text=True)


def test_credentials_are_shown_once_and_need_csrf(csrf_app, make_user, session):
    make_user("boss", "admin")
    gh = registry.create_greenhouse(session, "GH1", "One")
    registry.create_device(session, "d1", gh)
    session.commit()
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": "boss", "password": "correct-horse-9", "csrf_token": token})
    assert client.post("/iot/admin/devices/d1/credentials").status_code == 400
    page = client.get("/iot/admin/devices/d1").get_data(as_text=True)
    r = client.post("/iot/admin/devices/d1/credentials", data={"csrf_token": csrf_token_from(page)})
    html = r.get_data(as_text=True)
    assert 'id="new-password"' in html
    session.expire_all()
    assert session.scalar(select(Device.password_hash).where(Device.device_id == "d1")).startswith("$7$")
    assert 'id="new-password"' not in client.get("/iot/admin/devices/d1").get_data(as_text=True)


def test_english_page(client, make_user):
    make_user("boss", "admin")
    login(client, "boss")
    html = client.get("/iot/admin/?lang=en").get_data(as_text=True)
    assert "Register a greenhouse" in html
