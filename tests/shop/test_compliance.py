"""承诺达标合格证 (shop.trace.compliance): who may issue, for which lots, on which basis, with
what printed; every refusal; the register; serials under concurrency (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core import clock
from core.models import AuditEntry
from shop.trace import compliance, inspections, lots, producer, recall
from shop.trace.compliance import CertificateError
from shop.trace.models import ComplianceCertificate, HarvestLot
from tests.shop.trace_factories import make_farm

URL = "https://trace.example.cn/t/CODE"
PRODUCER = {
    "name": "登封市赵庄村田园种植专业合作社",
    "credit_code": "91350100M000100Y43",
    "platform_code": "410185000123",
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


def harvest(session, farm, qty="100", *, tested="pass", lab="青岛市农产品质量安全检测中心"):
    lot = lots.create_harvest_lot(
        session, farm.cycle, qty, "kg", harvested_on=date(2026, 6, 20), product_id=farm.peach.id
    )
    if tested:
        inspections.record_inspection(session, lot, lab, date(2026, 6, 21), tested)
    session.commit()
    return lot


def issue(session, lot, **kw):
    kw.setdefault("user_id", None)
    kw.setdefault("trace_url", URL)
    return compliance.issue_certificate(session, lot, **kw)


def test_certificate_prints_the_producer_origin_commitments_and_basis(session, farm, make_user):
    official = make_user("official1", "official", display_name="李会计")
    lot = harvest(session, farm)
    cert = issue(session, lot, quantity="25.5", basis="commissioned_test", user_id=official.id)
    session.commit()
    assert cert.serial == f"HGZ{clock.today().year}000001"
    snap = cert.snapshot
    assert snap["product"] == "黄桃" and snap["quantity"] == "25.5" and snap["unit"] == "kg"
    assert snap["producer"] == PRODUCER["name"] and snap["phone"] == "0371-62800000"
    assert snap["origin"] == "河南省登封市大金店镇赵庄村"
    assert snap["credit_code"] == "91350100M000100Y43" and snap["platform_code"] == "410185000123"
    assert snap["commitments"] == [
        "不使用禁用农药兽药、停用兽药和非法添加物",
        "常规农药兽药残留不超标",
        "对承诺的真实性负责",
    ]
    assert snap["basis_label"] == "委托检测" and snap["trace_url"] == URL and snap["issued_by"] == "李会计"
    log = session.scalar(select(AuditEntry).where(AuditEntry.action == "shop.trace.certificate"))
    assert log is not None and log.details["serial"] == cert.serial


def test_printed_certificate_does_not_change_with_the_producer(session, farm):
    lot = harvest(session, farm)
    cert = issue(session, lot, basis="commissioned_test")
    session.commit()
    producer.update(session, name="新名字合作社", phone="13900000000")
    session.commit()
    session.expire_all()
    again = session.get(ComplianceCertificate, cert.id)
    assert again.snapshot["producer"] == PRODUCER["name"] and again.snapshot["phone"] == "0371-62800000"


def test_serials_are_sequential_per_year(session, farm):
    lot = harvest(session, farm)
    serials = [issue(session, lot, quantity=q, basis="self_commitment").serial for q in ("1", "2", "3")]
    year = clock.today().year
    assert serials == [f"HGZ{year}000001", f"HGZ{year}000002", f"HGZ{year}000003"]


def test_basis_offered_by_the_records(session, farm):
    untested = harvest(session, farm, tested=None)
    assert compliance.bases_for(inspections.inspections_for(session, untested)) == (
        "internal_control",
        "self_commitment",
    )
    with pytest.raises(CertificateError) as refused:
        issue(session, untested, basis="commissioned_test")
    assert refused.value.field == "basis"
    with pytest.raises(CertificateError):
        issue(session, untested, basis="self_test")
    with pytest.raises(CertificateError):
        issue(session, untested, basis="made-up")
    assert issue(session, untested, basis="internal_control").basis == "internal_control"

    self_tested = harvest(session, farm, lab="合作社自检室")
    assert compliance.bases_for(inspections.inspections_for(session, self_tested))[0] == "self_test"
    with pytest.raises(CertificateError):
        issue(session, self_tested, basis="commissioned_test")
    assert issue(session, self_tested, basis="self_test").snapshot["basis_label"] == "自我检测"
    # no basis given: the first the records support
    assert issue(session, harvest(session, farm)).basis == "commissioned_test"


def test_failed_inspection_refuses_every_basis(session, farm):
    lot = harvest(session, farm, tested="fail")
    for basis in ("commissioned_test", "self_test", "internal_control", "self_commitment"):
        with pytest.raises(CertificateError) as refused:
            issue(session, lot, basis=basis)
        assert "failed an inspection" in str(refused.value)
    # a pack of it inherits the failed test
    ok_lot = harvest(session, farm, tested="fail")
    pack = lots.split_lot(session, ok_lot, ["10"])[0]
    with pytest.raises(CertificateError):
        issue(session, pack, basis="self_commitment")


def test_recalled_lot_and_what_was_made_from_it_are_refused_and_certificates_withdrawn(session, farm):
    lot = harvest(session, farm)
    pack = lots.split_lot(session, lot, ["10"])[0]
    cert = issue(session, pack, basis="commissioned_test")
    session.commit()
    assert not cert.withdrawn
    recall.recall_lot(session, lot, "抽检不合格")
    session.commit()
    assert cert.withdrawn
    for each in (lot, pack):
        with pytest.raises(CertificateError) as refused:
            issue(session, each, basis="self_commitment")
        assert "recalled" in str(refused.value)
    assert compliance.register_rows(session, [cert])[0][-1] == "已召回作废"


def test_made_from_a_recalled_lot_is_refused(session, farm):
    lot = harvest(session, farm)
    pack = lots.split_lot(session, lot, ["10"])[0]
    session.commit()
    lot.recalled_at = lot.created_at  # the ancestor alone (as an older recall left it)
    session.flush()
    with pytest.raises(CertificateError) as refused:
        issue(session, pack, basis="self_commitment")
    assert "made from recalled lot" in str(refused.value)


def test_quantity_bounds_and_units(session, farm):
    lot = harvest(session, farm, "100")
    for bad in ("0", "-1", "abc", "NaN", "1e30", "100.001"):
        with pytest.raises(CertificateError) as refused:
            issue(session, lot, quantity=bad, basis="self_commitment")
        assert refused.value.field == "quantity", bad
    with pytest.raises(CertificateError) as refused:
        issue(session, lot, quantity="1", unit="box", basis="self_commitment")
    assert refused.value.field == "unit"
    # kg lot in jin: 200 jin is the whole lot, 201 is more than it holds
    with pytest.raises(CertificateError):
        issue(session, lot, quantity="201", unit="jin", basis="self_commitment")
    assert issue(session, lot, quantity="200", unit="jin", basis="self_commitment").unit == "jin"
    other = harvest(session, farm, "100")
    whole = issue(session, other, basis="self_commitment")  # default: all it still holds
    assert whole.quantity == Decimal("100")
    other.remaining = Decimal(0)
    with pytest.raises(CertificateError):
        issue(session, other, basis="internal_control")


def test_certificates_together_never_cover_more_than_the_lot_held(session, farm, make_user):
    """Found by review: each certificate was checked only against what the lot still holds,
    so three of 100 jin on a 100-jin lot were all issued, and a recount that raised the
    stock raised the cap. A second click issues nothing either."""
    official = make_user("official1", "official")
    lot = harvest(session, farm, "100")
    first = issue(session, lot, quantity="60", basis="self_commitment", user_id=official.id)
    session.commit()
    with pytest.raises(CertificateError) as again:  # the same again at once: a double click
        issue(session, lot, quantity="60", basis="self_commitment", user_id=official.id)
    assert first.serial in str(again.value)
    with pytest.raises(CertificateError) as over:
        issue(session, lot, quantity="41", basis="internal_control", user_id=official.id)
    assert over.value.field == "quantity" and "40" in str(over.value)
    lot.remaining = Decimal("999999")  # a recount typed wrong
    session.commit()
    with pytest.raises(CertificateError):
        issue(session, lot, quantity="100", basis="internal_control", user_id=official.id)
    assert issue(session, lot, quantity="80", unit="jin", basis="internal_control", user_id=official.id)
    session.commit()
    with pytest.raises(CertificateError):  # 60 kg + 40 kg (80 jin): nothing left to certify
        issue(session, lot, quantity="0.5", basis="internal_control", user_id=official.id)


def test_who_may_issue(session, farm, make_user):
    lot = harvest(session, farm)
    own = make_user("farmer1", "farmer", household_id=farm.household.id)
    other_farm = make_farm(session, code="GH2", household_code="ZZ002")
    stranger = make_user("farmer2", "farmer", household_id=other_farm.household.id)
    customer = make_user("buyer", "customer")
    for user in (stranger, customer):
        with pytest.raises(CertificateError):
            issue(session, lot, basis="self_commitment", user_id=user.id)
    farm.household.phone = "13812345678"
    session.flush()
    cert = issue(session, lot, basis="self_commitment", user_id=own.id)
    # a household issues in its own name and phone; the 产地 is the cooperative's village
    assert cert.issuer == "household" and cert.snapshot["producer"] == "赵建国"
    assert cert.snapshot["phone"] == "13812345678" and cert.snapshot["credit_code"] == ""
    assert cert.snapshot["origin"] == "河南省登封市大金店镇赵庄村"


def test_the_cooperative_certifies_only_checked_in_lots_a_household_its_delivery(session, farm, make_user):
    own = make_user("farmer1", "farmer", household_id=farm.household.id)
    official = make_user("official1", "official")
    lot = lots.create_harvest_lot(
        session,
        farm.cycle,
        "30",
        "kg",
        harvested_on=date(2026, 6, 20),
        product_id=farm.peach.id,
        user_id=own.id,
    )
    session.commit()
    assert lot.checked_in_at is None
    with pytest.raises(CertificateError) as refused:
        issue(session, lot, basis="self_commitment", user_id=official.id)
    assert "not checked in" in str(refused.value)
    assert issue(session, lot, basis="self_commitment", user_id=own.id).issuer == "household"


def test_register_search(session, farm):
    a = harvest(session, farm)
    b = harvest(session, farm)
    first = issue(session, a, quantity="1", basis="self_commitment")
    second = issue(session, b, quantity="2", basis="self_commitment")
    session.commit()
    assert [c.serial for c in compliance.register(session)] == [second.serial, first.serial]
    assert [c.id for c in compliance.register(session, serial=first.serial)] == [first.id]
    assert [c.id for c in compliance.register(session, lot_number=b.lot_number)] == [second.id]
    assert len(compliance.register(session, product="黄桃")) == 2
    assert compliance.register(session, product="葡萄") == []
    today = clock.today()
    assert len(compliance.register(session, start=today, end=today)) == 2
    assert compliance.register(session, end=date(2026, 1, 1)) == []
    assert compliance.register(session, serial="%") == []  # LIKE wildcards are literal


def test_concurrent_issues_never_share_a_serial(engine, clean_database):
    """Two sessions issue at once: both succeed with different serials (the unique
    (year, number) and a retry under a savepoint); runs on PostgreSQL with TEST_DATABASE_URL."""
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        farm = make_farm(session)
        lot_ids = [harvest(session, farm).id for _ in range(6)]
    barrier = threading.Barrier(len(lot_ids))
    serials: list[str] = []
    errors: list[BaseException] = []

    def work(lot_id: int) -> None:
        with factory() as session:
            try:
                lot = session.get(HarvestLot, lot_id)
                barrier.wait()
                cert = issue(session, lot, quantity="1", basis="self_commitment")
                session.commit()
                serials.append(cert.serial)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in lot_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(serials) == len(lot_ids) == len(set(serials))
    year = clock.today().year
    assert sorted(serials) == [f"HGZ{year}{n:06d}" for n in range(1, len(lot_ids) + 1)]


def test_concurrent_certificates_of_one_lot_never_cover_more_than_it_held(engine, clean_database):
    """Six clerks certify 30-35 kg of one 100 kg lot at the same moment: the lot is locked
    while its certificates are summed, so together they never pass 100 kg (SQLite and
    PostgreSQL)."""
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        lot_id = harvest(session, make_farm(session), "100").id
    barrier = threading.Barrier(6)
    issued: list[Decimal] = []
    refused: list[str] = []
    errors: list[BaseException] = []

    def work(kg: int) -> None:
        with factory() as session:
            try:
                lot = session.get(HarvestLot, lot_id)
                barrier.wait()
                cert = issue(session, lot, quantity=str(kg), basis="self_commitment")
                session.commit()
                issued.append(cert.quantity)
            except CertificateError as exc:
                refused.append(str(exc))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(kg,)) for kg in range(30, 36)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert 1 <= len(issued) <= 3 and sum(issued) <= 100 and len(issued) + len(refused) == 6
    with factory() as session:
        total = session.scalar(select(func.sum(ComplianceCertificate.quantity)))
    assert total == sum(issued)


def test_the_certificates_qr_names_the_lot_not_its_whole_weight(session, farm):
    """Found by review: a certificate for 1 jin held the lot's Digital Link with the whole
    lot's weight (?3103=080000). The certificate's QR names the lot, without a weight."""
    from shop.trace import gs1

    lot = harvest(session, farm, "80")
    lot.gtin = "92000001000000"  # variable measure: its label carries the weight
    label = gs1.label_url("https://trace.example.cn", lot)
    assert label.endswith(f"/10/{lot.lot_number}?3103=080000")
    assert compliance.trace_url(lot, "https://trace.example.cn") == label.split("?")[0]
