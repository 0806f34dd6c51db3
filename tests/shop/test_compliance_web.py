"""承诺达标合格证 through the pages and the CLI: issuing from the lot page (messages beside
the fields), the printable page, the public trace page, the register (search, CSV, XLSX,
formula injection), the producer's settings page and ``flask shop certificate`` / ``producer``;
and the printed certificate read back from a PDF (pdftotext, zbarimg)."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import threading
from datetime import date
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from shop.trace import compliance, inspections, lots, producer, recall
from shop.trace.models import ComplianceCertificate, HarvestLot
from tests.conftest import DEFAULT_PASSWORD, login
from tests.shop.trace_factories import make_farm, spray

PRODUCER = {
    "name": "登封市赵庄村田园种植专业合作社",
    "credit_code": "91350100M000100Y43",
    "platform_code": "41018500012345678",  # the longest certificate: every optional line printed
    "province": "河南省",
    "county": "登封市",
    "township": "大金店镇",
    "village": "赵庄村",
    "phone": "0371-62800000",
}


@pytest.fixture
def farm(session):
    farm = make_farm(session)
    producer.update(session, **PRODUCER)
    session.commit()
    return farm


def harvest(session, farm, qty="100", tested="pass"):
    lot = lots.create_harvest_lot(
        session, farm.cycle, qty, "kg", harvested_on=date(2026, 6, 20), product_id=farm.peach.id
    )
    if tested:
        inspections.record_inspection(session, lot, "青岛市农产品质量安全检测中心", date(2026, 6, 21), tested)
    session.commit()
    return lot


@pytest.fixture
def official(client, make_user):
    make_user("official1", "official", display_name="李会计")
    login(client, "official1")
    return client


def test_issue_from_the_lot_page(official, session, farm):
    lot = harvest(session, farm)
    page = official.get(f"/trace/lots/{lot.id}").get_data(as_text=True)
    assert "data-issue-form" in page and 'value="commissioned_test"' in page
    r = official.post(
        f"/trace/lots/{lot.id}/certificates",
        data={"quantity": "12", "unit": "kg", "basis": "commissioned_test"},
    )
    assert r.status_code == 302
    cert = session.query(ComplianceCertificate).one()
    assert r.headers["Location"].endswith(f"/trace/certificates/{cert.id}")
    printed = official.get(f"/trace/certificates/{cert.id}").get_data(as_text=True)
    for text in (
        "承诺达标合格证",
        cert.serial,
        "黄桃",
        "12 千克",
        PRODUCER["name"],
        "0371-62800000",
        "河南省登封市大金店镇赵庄村",
        "91350100M000100Y43",
        "常规农药兽药残留不超标",
        "☑ 委托检测",
        "签字/盖章",
        "<svg",
    ):
        assert text in printed, text
    assert "size: A4" in printed
    # issued under the tests' loopback PUBLIC_BASE_URL: its frozen QR opens nothing, so the page says so
    assert 'data-warning="public-url"' in printed and "127.0.0.1" in printed
    label = official.get(f"/trace/certificates/{cert.id}?size=label").get_data(as_text=True)
    assert "size: 100mm 70mm" in label
    # the public trace page lists it
    public = official.get(f"/t/{lot.code}").get_data(as_text=True)
    assert cert.serial in public and "data-public-certificates" in public


def test_refusals_show_beside_the_field(official, session, farm):
    lot = harvest(session, farm, tested=None)
    r = official.post(
        f"/trace/lots/{lot.id}/certificates", data={"quantity": "1000", "basis": "self_commitment"}
    )
    assert r.status_code == 400
    assert 'data-error="quantity"' in r.get_data(as_text=True)
    r = official.post(
        f"/trace/lots/{lot.id}/certificates", data={"quantity": "1", "basis": "commissioned_test"}
    )
    assert r.status_code == 400 and 'data-error="basis"' in r.get_data(as_text=True)
    r = official.post(f"/trace/lots/{lot.id}/certificates", data={"quantity": "x\x00", "basis": "?"})
    assert r.status_code in (400,)
    assert session.query(ComplianceCertificate).count() == 0


def test_recalled_lot_shows_withdrawn_certificates(official, session, farm):
    lot = harvest(session, farm)
    official.post(f"/trace/lots/{lot.id}/certificates", data={"basis": "commissioned_test"})
    cert = session.query(ComplianceCertificate).one()
    recall.recall_lot(session, session.get(HarvestLot, lot.id), "抽检不合格")
    session.commit()
    assert "作废" in official.get(f"/trace/certificates/{cert.id}").get_data(as_text=True)
    assert "作废" in official.get(f"/t/{lot.code}").get_data(as_text=True)
    register = official.get("/trace/certificates").get_data(as_text=True)
    assert f'data-serial="{cert.serial}"' in register and "data-withdrawn" in register
    r = official.post(f"/trace/lots/{lot.id}/certificates", data={"basis": "self_commitment"})
    assert r.status_code == 400 and session.query(ComplianceCertificate).count() == 1


def test_a_farmer_issues_for_their_own_household_only(client, session, farm, make_user):
    make_user("farmer1", "farmer", household_id=farm.household.id)
    other = make_farm(session, code="GH2", household_code="ZZ002")
    make_user("farmer2", "farmer", household_id=other.household.id)
    lot = harvest(session, farm)
    login(client, "farmer2")
    assert (
        client.post(f"/trace/lots/{lot.id}/certificates", data={"basis": "self_commitment"}).status_code
        == 404
    )
    assert client.get("/trace/certificates").status_code == 403
    assert client.get("/trace/producer").status_code == 403
    client.get("/logout")
    login(client, "farmer1")
    r = client.post(f"/trace/lots/{lot.id}/certificates", data={"basis": "self_commitment"})
    assert r.status_code == 302
    cert = session.query(ComplianceCertificate).one()
    assert cert.issuer == "household" and cert.producer_name == "赵建国"
    assert client.get(f"/trace/certificates/{cert.id}").status_code == 200


def test_register_search_and_exports(official, session, farm):
    lot = harvest(session, farm)
    farm.peach.name_zh = '=HYPERLINK("x")黄桃'
    session.commit()
    official.post(f"/trace/lots/{lot.id}/certificates", data={"quantity": "3", "basis": "self_commitment"})
    cert = session.query(ComplianceCertificate).one()
    page = official.get(f"/trace/certificates?serial={cert.serial}").get_data(as_text=True)
    assert f'data-serial="{cert.serial}"' in page and "李会计" in page
    assert 'data-serial="' not in official.get("/trace/certificates?lot=NOPE").get_data(as_text=True)
    assert official.get("/trace/certificates?start=2026-13-40").status_code == 400
    rows = list(
        csv.reader(io.StringIO(official.get("/trace/certificates?format=csv").get_data(as_text=True)))
    )
    assert rows[0][0].lstrip("\ufeff") == "编号" and rows[1][0] == cert.serial
    assert rows[1][3].startswith("'=")  # no formula in a spreadsheet
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(official.get("/trace/certificates?format=xlsx").data))
    sheet = book.active
    assert sheet.cell(2, 1).value == cert.serial and sheet.cell(2, 5).value == 3
    assert str(sheet.cell(2, 4).value).startswith("'=")


def test_producer_settings_page(official, session):
    r = official.post(
        "/trace/producer", data={**PRODUCER, "credit_code": "91350100M000100Y44", "phone": "abc"}
    )
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert 'data-error="credit_code"' in html and 'data-error="phone"' in html
    r = official.post("/trace/producer", data={**PRODUCER, "name": "新合作社"})
    assert r.status_code == 302
    session.expire_all()
    assert producer.get(session).name == "新合作社"


def test_cli_issue_list_and_refusals(runner, session, farm):
    lot = harvest(session, farm)
    bad = harvest(session, farm, tested="fail")
    result = runner.invoke(args=["shop", "certificate", "issue", lot.lot_number, "--quantity", "5"])
    assert result.exit_code == 0, result.output
    serial, url = result.stdout.split()
    # the tests' PUBLIC_BASE_URL is a loopback address: the frozen QR is warned about (review)
    assert "PUBLIC_BASE_URL" in result.stderr
    assert serial.startswith("HGZ") and "/trace/certificates/" in url
    listed = runner.invoke(args=["shop", "certificate", "list"])
    assert listed.exit_code == 0 and serial in listed.output and lot.lot_number in listed.output
    refused = runner.invoke(args=["shop", "certificate", "issue", bad.lot_number])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "不合格" in refused.output or "检测" in refused.output  # the Chinese message
    refused = runner.invoke(args=["shop", "certificate", "issue", lot.lot_number, "--quantity", "abc"])
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    assert runner.invoke(args=["shop", "certificate", "issue", "NOPE"]).exit_code != 0
    assert runner.invoke(args=["shop", "certificate", "list", "--from", "2026-99-01"]).exit_code != 0


def test_cli_producer_show_and_set(runner, session):
    result = runner.invoke(args=["shop", "producer", "--name", "赵庄村合作社", "--village", "赵庄村"])
    assert result.exit_code == 0 and "name: 赵庄村合作社" in result.output
    shown = runner.invoke(args=["shop", "producer"])
    assert "origin: 赵庄村" in shown.output
    refused = runner.invoke(args=["shop", "producer", "--credit-code", "123"])
    assert refused.exit_code != 0 and "Traceback" not in refused.output


TOOLS = ("chromium", "pdftoppm", "pdftotext", "zbarimg")


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)} (make system-deps-test)"
)
@pytest.mark.parametrize("size", ["a4", "label"])
def test_printed_certificate_reads_back(app, session, farm, make_user, tmp_path, size):
    """Print the page to PDF with headless Chromium, read its text and decode its QR code."""
    import requests

    from shop.trace import gs1
    from shop.trace.compliance import issue_certificate

    make_user("official1", "official")
    lot = harvest(session, farm)
    with app.app_context():
        from core.web import settings

        target = gs1.label_url(settings().public_base_url, lot)
    cert = issue_certificate(
        session, lot, quantity="12", basis="commissioned_test", user_id=None, trace_url=target
    )
    session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        web = requests.Session()
        web.post(f"{base}/login", data={"username": "official1", "password": DEFAULT_PASSWORD})
        html = web.get(f"{base}/trace/certificates/{cert.id}?size={size}").text
    finally:
        server.shutdown()
        thread.join(timeout=5)
    # print the page as served (its stylesheet inlined, so a file:// page needs no server)
    css = (Path(app.static_folder or "static") / "css" / "compliance.css").read_text("utf-8")
    page = tmp_path / "certificate.html"
    page.write_text(
        html.replace('<link rel="stylesheet"', f'<style>{css}</style><link rel="ignored"'), "utf-8"
    )
    pdf = tmp_path / "certificate.pdf"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True
    ).stdout.decode()
    squeezed = "".join(text.split())
    for field in (
        "承诺达标合格证",
        cert.serial,
        "黄桃",
        "12千克",
        PRODUCER["name"],
        "0371-62800000",
        "河南省登封市大金店镇赵庄村",
        "41018500012345678",
        "不使用禁用农药兽药、停用兽药和非法添加物",
        "委托检测",
        "签字/盖章",
    ):
        assert field in squeezed, field
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True).stdout.decode()
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    width, height = (
        float(v) * 25.4 / 72 for v in re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups()
    )
    if size == "label":  # the whole certificate on one 100 × 70 mm label
        assert pages == 1 and abs(width - 100) < 1 and abs(height - 70) < 1, info
    else:
        assert pages == 1 and abs(width - 210) < 1 and abs(height - 297) < 1, info
    subprocess.run(
        ["pdftoppm", "-r", "300", "-png", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p")], check=True
    )
    png = next(tmp_path.glob("p*.png"))
    decoded = (
        subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True).stdout.decode().split()
    )
    assert decoded == [target]


def test_no_certificate_for_a_harvest_inside_a_pesticides_interval_on_any_path(
    official, runner, session, farm, make_user
):
    """The rule 常规农药残留不超标 cannot be promised for a lot harvested inside a pesticide's
    pre-harvest interval, even when an official let the harvest through: refused by the
    service, the lot page's form and the CLI; a pack of it and a gift box with it too."""
    from core.models import User
    from shop.trace import production

    kuaiji = session.query(User).filter_by(username="official1").one()
    spray(
        session,
        farm.cycle,
        date(2026, 6, 15),
        "14",
        user_id=kuaiji.id,
    )
    inside = lots.create_harvest_lot(
        session,
        farm.cycle,
        "100",
        "kg",
        harvested_on=date(2026, 6, 20),
        product_id=farm.peach.id,
        user_id=kuaiji.id,
        override_reason="暴雨将至抢收，已送检",
    )
    inspections.record_inspection(session, inside, "青岛市农产品质量安全检测中心", date(2026, 6, 21), "pass")
    clean = lots.create_harvest_lot(
        session, farm.cycle, "50", "kg", harvested_on=date(2026, 7, 1), product_id=farm.peach.id
    )
    inspections.record_inspection(session, clean, "青岛市农产品质量安全检测中心", date(2026, 7, 2), "pass")
    session.commit()
    pack = lots.split_lot(session, inside, ["10"])[0]
    box = lots.merge_lots(session, [(pack, "5"), (clean, "5")], product_id=farm.peach.id, unit="kg")
    session.commit()

    for lot in (inside, pack, box):
        with pytest.raises(production.IntervalError):
            compliance.issue_certificate(session, lot, user_id=kuaiji.id, trace_url="https://x.cn/t/c")
        session.rollback()
    r = official.post(f"/trace/lots/{inside.id}/certificates", data={"quantity": "12", "unit": "kg"})
    assert r.status_code in (200, 400) and "安全间隔期" in r.get_data(as_text=True)
    refused = runner.invoke(args=["shop", "certificate", "issue", box.lot_number, "--quantity", "1"])
    assert refused.exit_code == 1 and "安全间隔期" in refused.output and "Traceback" not in refused.output
    assert session.query(ComplianceCertificate).count() == 0
    ok = runner.invoke(args=["shop", "certificate", "issue", clean.lot_number, "--quantity", "5"])
    assert ok.exit_code == 0, ok.output  # the lot harvested after the interval is certified


def test_a_pesticide_recorded_later_withdraws_the_certificates_it_contradicts(official, session, farm):
    """Found by review: a pesticide recorded (backdated, on an official's override) after a
    certificate was issued put the harvest inside its interval, yet the certificate, and a
    gift box's, still showed as valid."""
    from core.models import User

    kuaiji = session.query(User).filter_by(username="official1").one()
    lot = harvest(session, farm)
    cert = compliance.issue_certificate(
        session, lot, quantity="10", user_id=kuaiji.id, trace_url="https://x.cn/t/c"
    )
    session.commit()
    code = lot.code
    assert "data-withdrawn" not in official.get(f"/t/{code}").get_data(as_text=True)
    spray(
        session,
        farm.cycle,
        date(2026, 6, 15),
        "14",
        user_id=kuaiji.id,
        override_reason="补记：六月十五日确已施药",
    )
    session.commit()
    session.expire_all()
    assert compliance.withdrawn_because(session, session.get(ComplianceCertificate, cert.id)) == "interval"
    public = official.get(f"/t/{code}?lang=zh_CN").get_data(as_text=True)
    assert "data-withdrawn" in public and "安全间隔期" in public
    printed = official.get(f"/trace/certificates/{cert.id}").get_data(as_text=True)
    assert "采收在农药安全间隔期内 · 本合格证作废" in printed
    assert 'data-warning="public-url"' not in printed  # https://x.cn is a real address
    register = official.get("/trace/certificates?lang=zh_CN").get_data(as_text=True)
    assert "data-withdrawn" in register
