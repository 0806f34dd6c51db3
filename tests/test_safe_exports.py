"""Spreadsheet exports never carry a formula from what someone typed, and device ids that arrive
in an MQTT topic pass the same format check as registered ones.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a line break is run by Excel, WPS
and LibreOffice as a formula (``=HYPERLINK(...)``, ``-2+3``, ``@SUM(...)``); every export
(``coop`` reports as CSV and XLSX, ``iot`` readings as CSV) goes through one neutraliser,
``core.text.safe_cell``, while numbers, negative amounts included, stay numbers."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import pytest
from sqlalchemy import func, select

from core.text import safe_cell
from tests.conftest import login

EVIL = '=HYPERLINK("http://evil.example","点击")'


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+86 138", "'+86 138"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1+1", "'  =1+1"),
        ("赵建国", "赵建国"),
        ("a=b", "a=b"),
        ("", ""),
        (-12.5, -12.5),
        (-3, -3),
        (None, None),
    ],
)
def test_the_one_neutraliser(value, cell):
    assert safe_cell(value) == cell


def test_coop_reports_keep_a_hostile_account_name_as_text(client, session, make_user):
    """A bank sub-account an official named like a formula, through the real report pages."""
    from openpyxl import load_workbook

    from coop.ledger import Line, ensure_account, load_chart, post_voucher
    from core import clock

    load_chart(session, opening=dt.date(2020, 1, 1))
    account = ensure_account(session, "102", EVIL)
    day = clock.today().replace(day=1)
    post_voucher(
        session,
        date=day,
        summary="-1+1 预付",  # the summary too
        lines=[Line(account.code, debit=12_345), Line("101", credit=12_345)],
    )
    session.commit()
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    base = f"/coop/reports/trial-balance?year={day.year}&from={day.month}&to={day.month}"
    text = client.get(base + "&format=csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    cells = [c for row in rows for c in row]
    assert not any(c.lstrip(" ").startswith(("=", "+", "@", "\t", "\r")) for c in cells)
    assert any(c.startswith("'=HYPERLINK") for c in cells), cells
    assert any(c in ("-123.45", "123.45") for c in cells)  # amounts are plain numbers, never quoted

    r = client.get(base + "&format=xlsx")
    ws = load_workbook(io.BytesIO(r.data)).active
    values = [c for row in ws.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in values)
    assert any(isinstance(c.value, str) and c.value.startswith("'=HYPERLINK") for c in values)
    numbers = [c.value for c in values if isinstance(c.value, int | float)]
    assert 123.45 in numbers or -123.45 in numbers  # number cells, not text


def test_iot_readings_export_keeps_hostile_ids_as_text_and_values_as_numbers(client, session, make_user):
    from iot import registry
    from iot.models import Reading

    # the id format allows a leading '-': "-1-1" is a formula to a spreadsheet (it shows -2)
    gh = registry.create_greenhouse(session, "-1-1", "公式棚", crop="peach", area_m2=100)
    device = registry.create_device(session, "-2-3", gh, kind="sensor")
    now = int(time.time())
    session.add_all(
        [
            Reading(device_id=device.id, greenhouse_id=gh.id, metric_id=1, ts=now - 60, value=-3.5),
            Reading(device_id=device.id, greenhouse_id=gh.id, metric_id=1, ts=now - 30, value=2.0),
        ]
    )
    session.commit()
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    r = client.get(f"/iot/g/{gh.code}/export.csv?range=24h")
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    data = rows[1:]
    assert data and all(row[2] == "'-1-1" and row[3] == "'-2-3" for row in data), data
    assert [row[-1] for row in data] == ["-3.5", "2.0"]  # a negative reading is a number, not quoted


# --- device ids from MQTT topics --------------------------------------------------------------


@pytest.mark.parametrize(
    "device",
    ["bad id", "x" * 81, "设备1", "=cmd|calc!A1", "dev\u00a01", "dev\n1", "a:b", "a,b"],
)
def test_a_topic_with_a_bad_device_id_is_quarantined_and_never_provisioned(session, device):
    from iot import registry
    from iot.ingest.writer import BatchWriter, Message
    from iot.models import Device, QuarantinedMessage

    gh = registry.create_greenhouse(session, "GH1", "Peach house 1", crop="peach", area_m2=600)
    session.commit()
    writer = BatchWriter(session.get_bind(), unknown_device_policy="provision", hooks=(None, None))
    payload = b'{"air_temperature": 21.5}'
    result = writer.store(
        [
            Message(f"farm/{gh.code}/{device}/telemetry", payload, time.time()),
            Message(f"tele/{device}/SENSOR", b'{"SHT3X": {"Temperature": 21.5}}', time.time()),
            Message(f"farm/{gh.code}/newdev-1/telemetry", payload, time.time()),  # a good id: provisioned
        ]
    )
    assert result.quarantined["bad_device_id"] == 2
    session.expire_all()
    assert set(session.scalars(select(Device.device_id))) == {"newdev-1"}
    reasons = dict(session.execute(select(QuarantinedMessage.topic, QuarantinedMessage.reason)).all())
    assert reasons[f"farm/{gh.code}/{device}/telemetry"] == "bad_device_id"
    assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 3


def test_the_registry_and_the_topic_check_are_one_rule(session):
    from iot import payloads, registry
    from iot.registry import RegistryError

    gh = registry.create_greenhouse(session, "GH1", "Peach house 1")
    for bad in ("bad id", "设备1", "x" * 81):
        with pytest.raises(RegistryError):
            registry.create_device(session, bad, gh)
        with pytest.raises(payloads.PayloadError) as refused:
            payloads.parse_topic(f"farm/GH1/{bad}/telemetry")
        assert refused.value.reason == "bad_device_id"
    assert payloads.parse_topic("farm/GH1/dev-1.a_b/telemetry").device == "dev-1.a_b"


def test_the_quarantine_page_names_the_reason(client, session, make_user):
    from iot.ingest.writer import BatchWriter, Message

    BatchWriter(session.get_bind(), unknown_device_policy="provision", hooks=(None, None)).store(
        [Message("farm/GH1/bad id/telemetry", b"{}", time.time())]
    )
    make_user("admin", "admin")
    login(client, "admin")
    page = client.get("/iot/admin/quarantine?lang=en").get_data(as_text=True)
    assert "Device id not allowed" in page
    page = client.get("/iot/admin/quarantine?lang=zh_CN").get_data(as_text=True)
    assert "Device id not allowed" not in page


@pytest.mark.xdist_group("demo")
def test_the_demo_shows_a_stray_device_in_the_quarantine(client, session, snapshot):
    from app import seed_demo
    from iot.models import Device

    snapshot("demo:demo-password-1", lambda: seed_demo(session, "demo-password-1"))
    assert not any(" " in d for d in session.scalars(select(Device.device_id)))
    login(client, "admin", "demo-password-1")
    page = client.get("/iot/admin/quarantine").get_data(as_text=True)
    assert "设备编号不合规" in page and "温室探头 2" in page
