"""GS1 identifiers: GTINs stored per product and net content and validated, lots keeping the
GTIN they were labelled with, variable measure, the Digital Link page (which hides the trace
code), rate limits on misses, link sets, /01/<gtin>, the staff page, the CLI and the demo."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from coop import demo as coop_demo
from core.config import ConfigError, Settings
from iot.models import Greenhouse
from shop import demo as shop_demo
from shop.models import Product
from shop.trace import gs1, gtins, inspections, lots
from shop.trace.gtins import GtinError
from shop.trace.models import HarvestLot, ProductGtin
from tests.conftest import login, make_test_app
from tests.shop.trace_factories import make_farm

HARVESTED = date(2026, 3, 4)
BASE = "http://127.0.0.1:5000"


def gtin(body: str) -> str:
    """``body`` with its check digit (computed independently of the code under test)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


PACK_5KG = gtin("690123400005")  # GTIN-13 of the prefix 6901234
PACK_5KG_NEW = gtin("690777700005")  # the same trade item, renumbered under another prefix
BY_WEIGHT = gtin("9690123400001")  # GTIN-14, indicator 9: variable measure


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def farm(session):
    return make_farm(session, code="GH3", household_code="ZZ003")  # its peaches have no GTIN yet


def harvest(session, farm, qty="80", unit="kg"):
    lot = lots.create_harvest_lot(
        session, farm.cycle, qty, unit, harvested_on=HARVESTED, product_id=farm.peach.id
    )
    session.commit()
    return lot


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "prefix", "variable", "problem"),
    [
        ("", "", None, "enter the GTIN"),
        ("69012340000X", "", None, "only digits"),
        ("6901234", "", None, "8, 12, 13 or 14 digits, not 7"),
        ("690123400000123", "", None, "8, 12, 13 or 14 digits, not 15"),
        (PACK_5KG[:-1] + str((int(PACK_5KG[-1]) + 1) % 10), "", None, f"should be {PACK_5KG[-1]}"),
        (PACK_5KG, "6907777", None, "does not begin with your GS1 Company Prefix 6907777"),
        (gtin("9638507"), "6901234", None, "GTIN-8"),
        (PACK_5KG, "", True, "begins with 9"),
        (BY_WEIGHT, "", False, "beginning with 9 is for goods sold by weight"),
        ("00000000000000", "", None, "not a trade item's GTIN"),  # review: all zeros were taken
        ("9780306406157", "", None, "not a trade item's GTIN"),  # an ISBN
        (gtin("977123456789"), "", None, "not a trade item's GTIN"),  # an ISSN
        (gtin("981234567890"), "", None, "not a trade item's GTIN"),  # a coupon
    ],
)
def test_a_wrong_gtin_is_refused_with_its_reason(typed, prefix, variable, problem):
    with pytest.raises(GtinError) as refused:
        gtins.parse_gtin(typed, company_prefix=prefix, variable=variable)
    assert problem in str(refused.value)


def test_a_gtin_is_stored_as_14_digits_and_typing_is_forgiven():
    full_width = "".join(chr(ord("０") + int(d)) for d in PACK_5KG)  # as a Chinese input method types it
    assert gtins.parse_gtin(full_width, company_prefix="6901234") == "0" + PACK_5KG
    assert gtins.parse_gtin(f" {PACK_5KG[:7]}-{PACK_5KG[7:]} ") == "0" + PACK_5KG
    assert gtins.parse_gtin(BY_WEIGHT, company_prefix="6901234", variable=True) == BY_WEIGHT
    assert gtins.parse_gtin(gtin("03600029145")) == "00" + gtin("03600029145")  # GTIN-12 (UPC)


@pytest.mark.parametrize(
    ("typed", "key"),
    [("5 kg", "5000 g"), ("10 斤", "5000 g"), ("2.5公斤", "2500 g"), ("500 g", "500 g"), ("１ 盒", "1 box")]
    + [("by weight", "variable"), ("称重", "variable"), ("bag", "1 bag")],
)
def test_net_content_as_staff_type_it(typed, key):
    assert gtins.parse_net_content(typed) == key


@pytest.mark.parametrize("typed", ["", "five kg", "0 kg", "0.0005 kg", "3 boxes"])
def test_a_net_content_that_says_nothing_is_refused(typed):
    with pytest.raises(GtinError) as refused:
        gtins.parse_net_content(typed)
    assert refused.value.field == "net_content"


def test_a_gtin_is_never_given_to_two_trade_items(session, farm):
    gtins.set_gtin(session, farm.peach, "5 kg", PACK_5KG)
    with pytest.raises(GtinError, match="already that of 黄桃"):
        gtins.set_gtin(session, farm.peach, "2.5 kg", PACK_5KG)  # another net content
    with pytest.raises(GtinError, match="already that of 黄桃"):
        gtins.set_gtin(session, farm.gift_box, "1 box", PACK_5KG)  # another product
    # labelled lots hold on to a GTIN even after the product was given a new one
    lot = harvest(session, farm)
    (pack,) = lots.split_lot(session, lot, ["5"])
    gtins.set_gtin(session, farm.peach, "5 kg", PACK_5KG_NEW)
    with pytest.raises(GtinError, match=f"on the labels of lot {pack.lot_number}"):
        gtins.set_gtin(session, farm.gift_box, "1 box", PACK_5KG)


# --- lots keep the GTIN they were labelled with --------------------------------------------


def test_the_old_derived_gtin_broke_labels_when_the_prefix_changed(session, farm):
    """The reproduction: GTINs were prefix + product id on every request; now none is derived."""
    lot = harvest(session, farm)
    assert not hasattr(gs1, "product_gtin")
    assert lot.gtin is None and gs1.label_url(BASE, lot) == f"{BASE}/t/{lot.code}"


def test_a_printed_label_resolves_after_the_prefix_changes(settings, session, farm):
    first = make_test_app(dataclasses.replace(settings, gs1_company_prefix="6901234"))
    staff = first.test_client()
    from core import auth

    auth.create_user(session, "clerk", "correct horse battery", "official")
    session.commit()
    login(staff, "clerk", "correct horse battery")
    stored = staff.post(
        "/trace/gtins", data={"product_id": farm.peach.id, "net_content": "5 kg", "gtin": PACK_5KG}
    )
    assert stored.status_code == 302
    lot = harvest(session, farm)
    (pack,) = lots.split_lot(session, lot, ["5"])
    session.commit()
    label = gs1.label_url(BASE, pack)
    assert label == f"{BASE}/01/0{PACK_5KG}/10/{pack.lot_number}"
    assert staff.get(path_of(label)).status_code == 200

    # the cooperative is given another prefix and renumbers the product
    second = make_test_app(dataclasses.replace(settings, gs1_company_prefix="6907777"))
    clerk = second.test_client()
    login(clerk, "clerk", "correct horse battery")
    refused = clerk.post(
        "/trace/gtins", data={"product_id": farm.peach.id, "net_content": "5 kg", "gtin": PACK_5KG}
    )
    assert refused.status_code == 400  # no longer the configured prefix's
    renumbered = clerk.post(
        "/trace/gtins", data={"product_id": farm.peach.id, "net_content": "5 kg", "gtin": PACK_5KG_NEW}
    )
    assert renumbered.status_code == 302
    assert second.test_client().get(path_of(label)).status_code == 200  # the printed label still works
    (new_pack,) = lots.split_lot(session, lot, ["5"])
    session.commit()
    assert new_pack.gtin == "0" + PACK_5KG_NEW and gs1.label_url(BASE, new_pack).endswith(
        f"/01/0{PACK_5KG_NEW}/10/{new_pack.lot_number}"
    )
    # the old GTIN alone still names the product
    assert second.test_client().get(f"/01/0{PACK_5KG}").status_code == 307


def test_a_new_net_content_gets_its_own_gtin(session, farm):
    gtins.set_gtin(session, farm.peach, "by weight", BY_WEIGHT)
    gtins.set_gtin(session, farm.peach, "10 斤", PACK_5KG)
    lot = harvest(session, farm, "160", "jin")
    five_kg = lots.split_lot(session, lot, ["10", "10"])  # 10 jin each
    two_and_a_half = lots.split_lot(session, lot, ["5"])[0]
    session.commit()
    assert lot.gtin == BY_WEIGHT
    assert {p.gtin for p in five_kg} == {"0" + PACK_5KG}
    assert two_and_a_half.gtin is None  # no GTIN for 2.5 kg yet: its label holds the short URL
    assert gs1.label_url(BASE, two_and_a_half) == f"{BASE}/t/{two_and_a_half.code}"
    assert gtins.net_contents_in_use(session, [farm.peach])[farm.peach.id] == ["2500 g", "5000 g", "variable"]
    gtins.set_gtin(session, farm.peach, "2.5 kg", gtin("690123400012"))
    later = lots.split_lot(session, lot, ["5"])[0]
    assert later.gtin == "0" + gtin("690123400012")


def test_a_gift_box_takes_the_box_products_gtin(session, farm):
    gtins.set_gtin(session, farm.gift_box, "1 box", gtin("690123400029"))
    gtins.set_gtin(session, farm.peach, "by weight", BY_WEIGHT)
    first, second = harvest(session, farm, "10"), harvest(session, farm, "10")
    box = lots.merge_lots(session, [(first, "2"), (second, "2")], product_id=farm.gift_box.id)
    assert box.gtin == "0" + gtin("690123400029")


# --- variable measure ------------------------------------------------------------------------


def test_goods_sold_by_weight_carry_their_weight_in_the_link(client, session, farm):
    gtins.set_gtin(session, farm.peach, "称重", BY_WEIGHT)
    lot = harvest(session, farm, "160", "jin")
    assert gs1.label_url(BASE, lot) == f"{BASE}/01/{BY_WEIGHT}/10/{lot.lot_number}?3103=080000"
    assert gs1.weight_attribute(harvest(session, farm, "1500.5")) == ("3102", "150050")
    response = client.get(path_of(gs1.label_url(BASE, lot)))
    assert response.status_code == 200 and lot.lot_number in response.get_data(as_text=True)
    # the weight is a data attribute: resolving does not depend on it
    assert client.get(f"/01/{BY_WEIGHT}/10/{lot.lot_number}").status_code == 200


# --- the Digital Link page ---------------------------------------------------------------------


@pytest.fixture
def labelled(session, farm):
    gtins.set_gtin(session, farm.peach, "by weight", BY_WEIGHT)
    lot = harvest(session, farm)
    inspections.record_inspection(
        session, lot, "SGS", HARVESTED, "pass", certificate_file="x.pdf", certificate_name="r.pdf"
    )
    session.commit()
    return lot


def test_the_digital_link_page_does_not_reveal_the_trace_code(client, labelled):
    lot = labelled
    by_link = client.get(f"/01/{BY_WEIGHT}/10/{lot.lot_number}?lang=en")
    html = by_link.get_data(as_text=True)
    assert by_link.status_code == 200 and lot.lot_number in html and "Passed" in html
    assert lot.code not in html and "/certificate/" not in html
    assert "data-enter-code" in html
    by_code = client.get(f"/t/{lot.code}?lang=en").get_data(as_text=True)
    assert lot.code in by_code and "/certificate/" in by_code  # who holds the label has it all


@pytest.fixture
def limited(settings):
    return make_test_app(dataclasses.replace(settings, trace_max_misses=3))


def test_misses_are_limited_per_address(limited, session, labelled):
    lot = labelled
    guesser = limited.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    for n in range(3):
        assert guesser.get(f"/01/{BY_WEIGHT}/10/L260304-9{n:02d}").status_code == 404
    refused = guesser.get("/t/ABCDEFGHJK")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "data-trace-throttled" in refused.get_data(as_text=True)
    # a lot number is guessable: links wait too; the unguessable printed code still opens the page
    assert guesser.get(f"/01/{BY_WEIGHT}/10/{lot.lot_number}").status_code == 429
    assert guesser.get(f"/t/{lot.code}").status_code == 200
    assert guesser.get(f"/t/{lot.code}/qr.svg").status_code == 200
    neighbour = limited.test_client()
    neighbour.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    assert neighbour.get("/t/ABCDEFGHJK").status_code == 404
    assert neighbour.get(f"/01/{BY_WEIGHT}/10/{lot.lot_number}").status_code == 200


def test_scanning_real_labels_is_never_counted(limited, labelled):
    customer = limited.test_client()
    for _ in range(10):
        assert customer.get(f"/01/{BY_WEIGHT}/10/{labelled.lot_number}").status_code == 200
        assert customer.get(f"/t/{labelled.code}").status_code == 200


def test_the_429_page_is_in_chinese(limited, labelled):
    guesser = limited.test_client()
    for _ in range(4):
        last = guesser.get("/t/ABCDEFGHJK")
    assert last.status_code == 429 and "查询" in last.get_data(as_text=True)


# --- /01/<gtin> and link sets --------------------------------------------------------------------


def test_a_gtin_alone_opens_the_products_page(client, session, farm):
    gtins.set_gtin(session, farm.peach, "5 kg", PACK_5KG)
    session.commit()
    response = client.get(f"/01/0{PACK_5KG}")
    assert response.status_code == 307 and response.headers["Location"].endswith(f"/shop/p/{farm.peach.slug}")
    page = client.get(f"/01/0{PACK_5KG}", follow_redirects=True)
    assert page.status_code == 200 and "黄桃" in page.get_data(as_text=True)
    assert client.get(f"/01/{PACK_5KG}").headers["Location"].endswith(f"/01/0{PACK_5KG}")  # canonical
    assert client.get(f"/01/0{gtin('690123400098')}").status_code == 404  # nobody's
    assert client.get("/01/06901234000051").status_code == 404  # a wrong check digit


def test_link_sets(client, labelled, farm):
    lot = labelled
    anchor = f"{BASE}/01/{BY_WEIGHT}/10/{lot.lot_number}"
    response = client.get(f"/01/{BY_WEIGHT}/10/{lot.lot_number}?linkType=all")
    assert response.status_code == 200 and response.mimetype == "application/linkset+json"
    assert "linkset-context" in response.headers["Link"]
    assert lot.code not in response.get_data(as_text=True)
    (entry,) = json.loads(response.data)["linkset"]
    assert entry["anchor"] == anchor
    voc = "https://gs1.org/voc/"
    assert entry[voc + "defaultLink"][0]["href"].startswith(anchor)
    assert entry[voc + "traceability"][0]["href"] == f"{BASE}/01/{BY_WEIGHT}/10/{lot.lot_number}?3103=080000"
    assert entry[voc + "pip"][0]["href"].endswith(f"/shop/p/{farm.peach.slug}")
    assert entry[voc + "certificationInfo"][0]["href"].endswith("#inspections")
    for links in (v for k, v in entry.items() if k != "anchor"):
        assert all({"href", "title", "type"} <= set(link) for link in links)
    product = json.loads(client.get(f"/01/{BY_WEIGHT}?linkType=all").data)["linkset"][0]
    assert product["anchor"] == f"{BASE}/01/{BY_WEIGHT}" and voc + "pip" in product
    pip = client.get(f"/01/{BY_WEIGHT}/10/{lot.lot_number}?linkType=gs1:pip")
    assert pip.status_code == 307 and pip.headers["Location"].endswith(f"/shop/p/{farm.peach.slug}")


# --- staff page and CLI ----------------------------------------------------------------------------


@pytest.fixture
def clerk(client, session, make_user):
    make_user("clerk", "official")
    login(client, "clerk")
    return client


def test_the_staff_page_says_what_is_wrong_beside_the_field(clerk, session, farm):
    page = clerk.get("/trace/gtins?lang=en").get_data(as_text=True)
    assert f'data-missing="{farm.peach.id}:variable"' in page
    wrong = clerk.post(
        "/trace/gtins?lang=en",
        data={"product_id": farm.peach.id, "net_content": "by weight", "gtin": PACK_5KG},
    )
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 400 and "begins with 9" in html and f'value="{PACK_5KG}"' in html
    bad_net = clerk.post(
        "/trace/gtins?lang=en", data={"product_id": farm.peach.id, "net_content": "lots", "gtin": BY_WEIGHT}
    )
    assert bad_net.status_code == 400 and 'has-error">\n    <label for="net_content"' in bad_net.get_data(
        as_text=True
    )
    chinese = clerk.post(
        "/trace/gtins",
        data={"product_id": farm.peach.id, "net_content": "称重", "gtin": BY_WEIGHT[:-1] + "0"},
    )
    assert chinese.status_code == 400 and "校验位" in chinese.get_data(as_text=True)
    ok = clerk.post(
        "/trace/gtins", data={"product_id": farm.peach.id, "net_content": "称重", "gtin": BY_WEIGHT}
    )
    assert ok.status_code == 302
    assert (
        session.scalar(select(ProductGtin.gtin).where(ProductGtin.product_id == farm.peach.id)) == BY_WEIGHT
    )
    row_id = session.scalar(select(ProductGtin.id).where(ProductGtin.product_id == farm.peach.id))
    assert clerk.post(f"/trace/gtins/{row_id}/remove").status_code == 302
    session.expire_all()
    assert session.scalar(select(ProductGtin.id).where(ProductGtin.id == row_id)) is None


def test_farmers_cannot_set_gtins(client, make_user, farm):
    make_user("zhaolin", "farmer", household_id=farm.household.id)
    login(client, "zhaolin")
    assert client.get("/trace/gtins").status_code == 403
    assert (
        client.post(
            "/trace/gtins", data={"product_id": farm.peach.id, "net_content": "5 kg", "gtin": PACK_5KG}
        ).status_code
        == 403
    )


def test_the_cli_sets_lists_and_refuses(runner, session, farm):
    done = runner.invoke(args=["shop", "gtin", "set", farm.peach.slug, "10 斤", PACK_5KG])
    assert done.exit_code == 0, done.output
    assert f"0{PACK_5KG}" in runner.invoke(args=["shop", "gtin", "list"]).output
    refused = runner.invoke(args=["shop", "gtin", "set", str(farm.peach.id), "5 kg", PACK_5KG[:-1] + "0"])
    assert refused.exit_code == 1 and "check digit" in refused.output
    assert runner.invoke(args=["shop", "gtin", "remove", farm.peach.slug, "5 kg"]).exit_code == 0
    assert runner.invoke(args=["shop", "gtin", "list"]).output.strip() == ""


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["69O1234", "123", "6901234567890", "2012345", "0212345", "9781234"])
def test_a_bad_company_prefix_is_a_clear_config_error(tmp_path, prefix):
    with pytest.raises(ConfigError, match="GS1_COMPANY_PREFIX"):
        Settings.from_env({"GS1_COMPANY_PREFIX": prefix}, instance_path=tmp_path, secret_key="x")


def test_no_company_prefix_by_default(tmp_path):
    assert Settings.from_env({}, instance_path=tmp_path, secret_key="x").gs1_company_prefix == ""
    typed = Settings.from_env(
        {"GS1_COMPANY_PREFIX": "６９０ １２３４"}, instance_path=tmp_path, secret_key="x"
    )
    assert typed.gs1_company_prefix == "6901234"


# --- the demo ------------------------------------------------------------------------------------


def test_the_demo_labels_every_net_content_with_its_own_restricted_circulation_gtin(session):
    ctx: dict = {"password": None, "accounts": []}
    coop_demo.seed_members(session, ctx)
    for i, (code, crop) in enumerate([("GH-PEACH", "peach"), ("GH-GRAPE", "grape")]):
        session.add(Greenhouse(code=code, name=code, crop=crop, household_id=ctx["households"][i].id))
    session.flush()
    shop_demo.seed(session, ctx)
    made = shop_demo.seed_trace(session, ctx)
    session.commit()
    for row in session.scalars(select(ProductGtin)):
        assert "20" <= row.gtin[1:3] <= "29" and gtins.valid_gtin(row.gtin)  # GS1 RCN: nobody's GTIN
    harvest_lot = lots.lot_by_number(session, made["lot"])
    packs = [lots.lot_by_code(session, code) for code in made["packs"]]
    box = lots.lot_by_number(session, made["box"])
    assert harvest_lot.gtin[0] == "9" and gs1.weight_attribute(harvest_lot) == ("3103", "080000")
    assert {p.gtin for p in packs} == {packs[0].gtin} and packs[0].gtin not in (harvest_lot.gtin, None)
    assert box.gtin is not None and box.gtin not in (harvest_lot.gtin, packs[0].gtin)
    peach = session.scalar(select(Product).where(Product.slug == "yellow-peach"))
    assert {
        r.net_content for r in session.scalars(select(ProductGtin).where(ProductGtin.product_id == peach.id))
    } == {
        "variable",
        "5000 g",
    }
    unlabelled = session.scalar(
        select(HarvestLot.id).where(HarvestLot.product_id.is_not(None), HarvestLot.gtin.is_(None))
    )
    assert unlabelled is None
    assert Decimal(harvest_lot.quantity) == Decimal("160")
