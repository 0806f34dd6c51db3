"""EPCIS 2.0 export: the document validates against GS1's JSON schema, a broken one does not."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from core import auth
from shop.models import Order
from shop.orders import sales_of
from shop.trace import epcis, gs1, inspections, lots, producer, recall
from tests.shop.trace_factories import add_readings, local_ts, make_farm, sell

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "epcis-2.0-json-schema.json").read_text()
)
BASE = "https://trace.example.cn"


@pytest.fixture
def family(session):
    """A harvest lot with readings, an inspection, packs, a gift box, a sale and a recall."""
    farm = make_farm(session, planted_on=date(2026, 3, 1))
    other = make_farm(session, code="GH2", household_code="ZZ002")
    start = local_ts(date(2026, 3, 1))
    add_readings(session, farm, "air_temperature", [(start + i * 1800, 15 + i % 7) for i in range(200)])
    add_readings(session, farm, "air_humidity", [(start + i * 1800, 70 + i % 9) for i in range(200)])
    add_readings(session, farm, "soil_moisture", [(start + i * 3600, 55 + i % 5) for i in range(100)])
    add_readings(session, farm, "ec", [(start + i * 3600, 1.5) for i in range(50)])
    add_readings(session, farm, "ph", [(start + i * 3600, 6.4) for i in range(50)])
    lot = lots.create_harvest_lot(
        session, farm.cycle, "100", "kg", harvested_on=date(2026, 3, 10), product_id=farm.peach.id
    )
    inspections.record_inspection(
        session,
        lot,
        "SGS",
        date(2026, 3, 10),
        "pass",
        certificate_file="abc.pdf",
        certificate_name="report.pdf",
    )
    packs = lots.split_lot(session, lot, ["2", "2"])
    jin_lot = lots.create_harvest_lot(session, other.cycle, "40", "jin", harvested_on=date(2026, 3, 11))
    box = lots.merge_lots(session, [(packs[0], 2), (jin_lot, 4)], product_id=farm.gift_box.id)
    sell(session, packs[1], "2")  # a paid order, through cart, checkout and payment
    recall.recall_lot(session, jin_lot, "Label error")
    session.commit()
    return farm, lot, packs, box


def _types(document):
    return [(e["type"], e.get("bizStep")) for e in document["epcisBody"]["eventList"]]


def test_export_validates_against_the_gs1_schema(session, family):
    _farm, lot, packs, box = family
    document = epcis.export_lot(session, box, BASE, "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    types = _types(document)
    for expected in [
        ("ObjectEvent", "commissioning"),
        ("ObjectEvent", "sensor_reporting"),
        ("ObjectEvent", "inspecting"),
        ("TransformationEvent", "repackaging"),
        ("TransformationEvent", "assembling"),
        ("ObjectEvent", "holding"),
    ]:
        assert expected in types, expected
    # no invented serials: a pack is its label's GTIN + lot, so nothing is aggregated
    assert not any(t == "AggregationEvent" for t, _step in types) and "/21/" not in json.dumps(document)
    # the box document is about the box's family: the pack sold to someone else is named once, as
    # an output of the split that made it, but its sale is not in the box's document
    assert ("ObjectEvent", "retail_selling") not in types
    harvest = next(e for e in document["epcisBody"]["eventList"] if e.get("bizStep") == "commissioning")
    assert (
        harvest["quantityList"][0]["epcClass"] == f"https://id.gs1.org/01/06970000000017/10/{lot.lot_number}"
    )
    assert harvest["ilmd"]["cbvmda:harvestStartDate"] == "2026-03-10"
    assert harvest["eventTimeZoneOffset"] == "+08:00"
    sensors = next(e for e in document["epcisBody"]["eventList"] if e.get("bizStep") == "sensor_reporting")
    temperature = next(
        s for s in sensors["sensorElementList"] if s["sensorReport"][0]["type"] == "Temperature"
    )
    assert (
        temperature["sensorReport"][0]["minValue"] == 15 and temperature["sensorReport"][0]["maxValue"] == 21
    )
    assert temperature["sensorReport"][0]["uom"] == "CEL"
    jin_lot = lots.lot_by_number(session, "L260311-001")  # no product, so no GTIN: its public URL
    jin = [
        q
        for e in document["epcisBody"]["eventList"]
        for q in e.get("inputQuantityList", [])
        if q["epcClass"] == f"{BASE}/t/{jin_lot.code}"
    ]
    assert jin and jin[0] == {"epcClass": jin[0]["epcClass"], "quantity": 2.0, "uom": "KGM"}  # 4 jin = 2 kg


def test_every_lot_of_the_family_exports_valid_documents(session, family):
    _farm, lot, packs, _box = family
    for each in [lot, *packs]:
        document = epcis.export_lot(session, each, BASE, "6970000", sales_of=sales_of)
        assert epcis.validate(document, SCHEMA) == [], each.lot_number
    sold = epcis.export_lot(session, packs[1], BASE, "6970000", sales_of=sales_of)
    assert ("ObjectEvent", "retail_selling") in _types(sold)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("@context"),
        lambda d: d.update(schemaVersion="two"),
        lambda d: d.update(creationDate="yesterday"),  # needs the date-time format check
        lambda d: d["epcisBody"]["eventList"][0].pop("eventTimeZoneOffset"),
        lambda d: d["epcisBody"]["eventList"][0].update(action="EAT"),
        lambda d: d["epcisBody"]["eventList"][0]["quantityList"][0].update(
            epcClass="not a uri"
        ),  # format: uri
        lambda d: d["epcisBody"]["eventList"][0]["quantityList"][0].update(uom="kilogram"),
        lambda d: d["epcisBody"]["eventList"][0].update(colour="green"),
    ],
)
def test_a_broken_document_does_not_validate(session, family, breakage):
    _farm, lot, _packs, _box = family
    document = epcis.export_lot(session, lot, BASE, "6970000", sales_of=sales_of)
    broken = copy.deepcopy(document)
    breakage(broken)
    assert epcis.validate(document, SCHEMA) == []
    assert epcis.validate(broken, SCHEMA) != []


def test_cli_writes_the_document(runner, session, family, tmp_path):
    _farm, lot, _packs, _box = family
    out = tmp_path / "lot.jsonld"
    result = runner.invoke(args=["shop", "export-epcis", lot.lot_number, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert lot.lot_number in result.output
    document = json.loads(out.read_text())
    assert epcis.validate(document, SCHEMA) == []
    by_code = runner.invoke(args=["shop", "export-epcis", lot.code])
    assert by_code.exit_code == 0 and json.loads(by_code.output)["type"] == "EPCISDocument"
    missing = runner.invoke(args=["shop", "export-epcis", "L000000-404"])
    assert missing.exit_code != 0 and "no lot" in missing.output


def test_api_serves_the_document_to_token_holders(client, session, make_user, family):
    farm, lot, _packs, _box = family
    user = make_user("zhaolin", "farmer", household_id=farm.household.id)
    _row, token = auth.issue_token(session, session.merge(user), "erp")
    session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    response = client.get(f"/api/v1/lots/{lot.lot_number}/epcis", headers=headers)
    assert response.status_code == 200 and response.mimetype == "application/ld+json"
    assert epcis.validate(response.get_json(force=True), SCHEMA) == []
    assert client.get(f"/api/v1/lots/{lot.lot_number}/epcis").status_code == 401
    missing = client.get("/api/v1/lots/NOPE/epcis", headers=headers)
    assert missing.status_code == 404 and "error" in missing.get_json()


def test_paid_orders_become_sales_on_the_page_and_in_the_export(client, session, family):
    from core.db import utcnow
    from tests.shop.trace_factories import make_order

    _farm, _lot, packs, _box = family
    order = make_order(session, packs[1], "2", name="陈女士", phone="13800000001", status="shipped")
    order.paid_at = utcnow()
    make_order(
        session, packs[1], "1", name="周女士", phone="13800000002", stock_state="released", status="cancelled"
    )
    session.commit()
    html = client.get(f"/t/{packs[1].code}?lang=en").get_data(as_text=True)
    assert html.count('data-event="sold"') == 2  # the shop's LotEvent and the paid order
    assert 'data-event="shipped"' in html and "陈女士" not in html and "周女士" not in html
    document = epcis.export_lot(session, packs[1], BASE, "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    sales = [e for e in document["epcisBody"]["eventList"] if e.get("bizStep") == "retail_selling"]
    assert sorted(e["quantityList"][0]["quantity"] for e in sales) == [2.0, 2.0]


# --- one identity per pack ----------------------------------------------------------------


def _events(document):
    return document["epcisBody"]["eventList"]


def _named(event) -> list[str]:
    """Every class identifier an event names, from any of its quantity lists."""
    return [
        q["epcClass"]
        for key in ("quantityList", "inputQuantityList", "outputQuantityList", "childQuantityList")
        for q in event.get(key, [])
    ]


def _label_identity(session, lot) -> str:
    """What the lot's label prints (its QR code's Digital Link), on the canonical GS1 domain."""
    printed = gs1.label_url(BASE, lot)
    return printed.replace(BASE, "https://id.gs1.org") if "/01/" in printed else printed


def test_a_pack_has_one_identity_in_every_event_that_names_it(session, family):
    farm, lot, packs, box = family
    inspections.record_inspection(session, packs[0], "村检测室", date(2026, 3, 12), "pass")
    session.commit()
    document = epcis.export_lot(session, lot, BASE, "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    for each in [lot, *packs, box]:
        label = _label_identity(session, each)
        named = {
            name
            for e in _events(document)
            for name in _named(e)
            if name.endswith((f"/10/{each.lot_number}", f"/t/{each.code}"))
        }
        assert named == {label}, (each.lot_number, named)
    # and each step names it exactly where it happened
    steps = defaultdict(set)
    for e in _events(document):
        for name in _named(e):
            steps[name].add(e.get("bizStep"))
    assert {"commissioning", "repackaging", "inspecting"} <= steps[_label_identity(session, lot)]
    assert {"repackaging", "assembling", "inspecting"} <= steps[_label_identity(session, packs[0])]
    assert {"repackaging", "retail_selling"} <= steps[_label_identity(session, packs[1])]
    assert {"assembling", "holding"} <= steps[_label_identity(session, box)]  # recalled with its jin lot


def test_a_split_and_a_merge_are_one_transformation_each(session, family):
    _farm, lot, packs, box = family
    jin_lot = lots.lot_by_number(session, "L260311-001")
    for document in (
        epcis.export_lot(session, lot, BASE, "6970000", sales_of=sales_of),
        epcis.export_lot(session, box, BASE, "6970000", sales_of=sales_of),
    ):
        assert epcis.validate(document, SCHEMA) == []
        (split,) = [e for e in _events(document) if e.get("bizStep") == "repackaging"]
        assert split["inputQuantityList"] == [
            {"epcClass": _label_identity(session, lot), "quantity": 4.0, "uom": "KGM"}
        ]
        assert split["outputQuantityList"] == [
            {"epcClass": _label_identity(session, p), "quantity": 2.0, "uom": "KGM"} for p in packs
        ]
        (merge,) = [e for e in _events(document) if e.get("bizStep") == "assembling"]
        assert merge["inputQuantityList"] == [
            {"epcClass": _label_identity(session, packs[0]), "quantity": 2.0, "uom": "KGM"},
            {"epcClass": _label_identity(session, jin_lot), "quantity": 2.0, "uom": "KGM"},  # 4 jin
        ]
        assert merge["outputQuantityList"] == [{"epcClass": _label_identity(session, box), "quantity": 1.0}]
        assert not [e for e in _events(document) if e["type"] == "AggregationEvent"]


def test_sales_name_their_order(session, family):
    _farm, _lot, packs, _box = family
    order = session.scalars(select(Order)).one()
    document = epcis.export_lot(session, packs[1], BASE, "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    (sale,) = [e for e in _events(document) if e.get("bizStep") == "retail_selling"]
    (transaction,) = sale["bizTransactionList"]
    assert transaction["type"] == "po" and transaction["bizTransaction"].endswith(f"order-{order.number}")
    assert sale["bizLocation"]["id"] == f"{BASE}/loc/sales-centre"


def test_measured_residues_are_sensor_reports(session, family):
    _farm, lot, _packs, _box = family
    measured = inspections.read_results(
        [
            {"substance": "毒死蜱", "cas": "2921-88-2", "value": "0.012", "unit": "mg/kg", "mrl": "0.5"},
            {"substance": "多菌灵", "cas": "10605-21-7", "value": "ND", "unit": "mg/kg", "mrl": "2"},
            {"substance": "铅", "value": "35", "unit": "µg/kg"},
            {},
        ]
    )
    inspections.record_inspection(session, lot, "SGS", date(2026, 3, 11), "pass", results=measured)
    session.commit()
    document = epcis.export_lot(session, lot, BASE, "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    inspected = [
        e for e in _events(document) if e.get("bizStep") == "inspecting" and "sensorElementList" in e
    ]
    (element,) = inspected[0]["sensorElementList"]
    chlorpyrifos, carbendazim, lead = element["sensorReport"]
    assert chlorpyrifos["chemicalSubstance"] == "https://identifiers.org/cas:2921-88-2"
    assert chlorpyrifos["value"] == 0.012 and chlorpyrifos["uom"] == "NA"  # UN/ECE Rec 20: mg/kg
    assert chlorpyrifos["ty:maximumResidueLimit"] == 0.5 and chlorpyrifos["ty:exceedsLimit"] is False
    assert "value" not in carbendazim and carbendazim["ty:detected"] is False
    assert lead["uom"] == "J33" and lead["value"] == 35.0  # µg/kg
    assert lead["chemicalSubstance"].startswith(f"{BASE}/ns/epcis#substance-")


# --- locations and master data ------------------------------------------------------------


def test_read_points_and_business_locations_resolve(client, session, family):
    farm, lot, _packs, box = family
    producer.update(
        session, name="青山果蔬专业合作社", province="山东省", county="临朐县", phone="0536-1234567"
    )
    session.commit()
    document = epcis.export_lot(session, lot, BASE, "6970000", sales_of=sales_of)
    places = {e[key]["id"] for e in _events(document) for key in ("readPoint", "bizLocation") if key in e}
    assert f"{BASE}/loc/greenhouse/GH1" in places and f"{BASE}/loc/sales-centre" in places
    for place in places:
        assert place.startswith(BASE)
        path = place[len(BASE) :]
        page = client.get(path)
        assert page.status_code == 200, path
        assert "青山果蔬专业合作社" in page.get_data(as_text=True)
        assert "赵建国" not in page.get_data(as_text=True)  # no household on a location page
        as_json = client.get(path, headers={"Accept": "application/ld+json"})
        assert as_json.status_code == 200 and as_json.mimetype == "application/ld+json"
        assert as_json.get_json(force=True)["@id"].endswith(path)
        assert client.get(path + "?format=json").get_json(force=True)["@type"] == "Place"
    assert client.get("/loc/greenhouse/NOPE").status_code == 404


def test_the_document_carries_master_data(session, family):
    _farm, lot, _packs, box = family
    producer.update(session, name="青山果蔬专业合作社", credit_code="", platform_code="3707240001")
    session.commit()
    document = epcis.export_lot(session, box, BASE, "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    vocabularies = {
        v["type"]: {
            el["id"]: {a["id"]: a.get("attribute") for a in el.get("attributes", [])}
            for el in v["vocabularyElementList"]
        }
        for v in document["epcisHeader"]["epcisMasterData"]["vocabularyList"]
    }
    places = vocabularies["urn:epcglobal:epcis:vtype:BusinessLocation"]
    used = {e[k]["id"] for e in _events(document) for k in ("readPoint", "bizLocation") if k in e}
    assert used and used <= set(places)
    assert places[f"{BASE}/loc/greenhouse/GH1"]["urn:epcglobal:cbv:mda#name"] == "Peach house GH1"
    (party,) = vocabularies["urn:epcglobal:epcis:vtype:Party"].values()
    assert party["urn:epcglobal:cbv:mda#name"] == "青山果蔬专业合作社"
    assert party[f"{BASE}/ns/epcis#platformCode"] == "3707240001"
    classes = vocabularies["urn:epcglobal:epcis:vtype:EPCClass"]
    named = {name for e in _events(document) for name in _named(e)}
    assert named == set(classes)
    assert classes[_label_identity(session, box)]["urn:epcglobal:cbv:mda#descriptionShort"] == "鲜果礼盒"


# --- a configured GLN: SGLNs ----------------------------------------------------------------

GLN = "6970000000109"  # under the company prefix 6970000, check digit 9


def test_a_gln_is_checked_when_the_app_starts(tmp_path):
    from core.config import ConfigError, Settings

    env = {"TIANYUAN_INSTANCE_PATH": str(tmp_path), "GS1_COMPANY_PREFIX": "6970000"}
    assert Settings.from_env({**env, "GS1_GLN": GLN}).gs1_gln == GLN
    for wrong in ("6970000000108", "697000000010", "6980000000108"):  # check digit, length, prefix
        with pytest.raises(ConfigError, match="GS1_GLN"):
            Settings.from_env({**env, "GS1_GLN": wrong})
    assert Settings.from_env(env).gs1_gln == ""


def test_with_a_gln_locations_are_sglns(session, family, settings, app):
    _farm, lot, packs, _box = family
    document = epcis.export_lot(session, packs[1], BASE, "6970000", sales_of=sales_of, gln=GLN)
    assert epcis.validate(document, SCHEMA) == []
    places = {e[k]["id"] for e in _events(document) for k in ("readPoint", "bizLocation") if k in e}
    assert places == {"urn:epc:id:sgln:6970000.00010.GH1", "urn:epc:id:sgln:6970000.00010.0"}
    (sale,) = [e for e in _events(document) if e.get("bizStep") == "retail_selling"]
    order = session.scalars(select(Order)).one()
    assert sale["bizTransactionList"][0]["bizTransaction"] == f"urn:epcglobal:cbv:bt:{GLN}:{order.number}"
    (vocabulary,) = [
        v
        for v in document["epcisHeader"]["epcisMasterData"]["vocabularyList"]
        if v["type"].endswith("BusinessLocation")
    ]
    pages = {
        el["id"]: next(a["attribute"] for a in el["attributes"] if a["id"].endswith("#page"))
        for el in vocabulary["vocabularyElementList"]
    }
    assert pages["urn:epc:id:sgln:6970000.00010.GH1"] == f"{BASE}/loc/greenhouse/GH1"
    # and the location page says which SGLN it is
    from dataclasses import replace

    from tests.conftest import make_test_app

    with_gln = make_test_app(replace(settings, gs1_gln=GLN, gs1_company_prefix="6970000"))
    page = with_gln.test_client().get("/loc/greenhouse/GH1").get_data(as_text=True)
    assert "urn:epc:id:sgln:6970000.00010.GH1" in page
    from core.web import EXT

    with_gln.extensions[EXT]["db"].engine.dispose()


def test_location_pages_never_fail_on_odd_input(client, session, family):
    for path in (
        "/loc/greenhouse/%00",
        "/loc/greenhouse/a/b",
        "/loc/greenhouse/" + "x" * 500,
        "/loc/sales-centre?format=xml",
    ):
        assert client.get(path).status_code in (200, 400, 404), path  # never a 500
    assert (
        client.get("/loc/sales-centre", headers={"Accept": "application/json"}).mimetype
        == "application/ld+json"
    )
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert client.get("/loc/sales-centre", headers={"Accept": browser}).mimetype == "text/html"
