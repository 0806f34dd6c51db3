"""The public trace page as a customer reads it: Chinese throughout on a Chinese page, the
producer's name, 产地, address and phone (also in the recall banner), each origin of a gift box
once with its own dates, and the lookup counter (the counterfeit signal)."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from coop.models import Household
from core import clock
from iot.models import Greenhouse
from shop.trace import cycles, inspections, lookups, lots, producer, recall
from shop.trace.models import LotLookup
from shop.trace.story import crop_names
from tests.conftest import login
from tests.shop.trace_factories import make_farm

PRODUCER = {
    "name": "登封市赵庄村田园种植专业合作社",
    "province": "河南省",
    "county": "登封市",
    "township": "大金店镇",
    "village": "赵庄村",
    "address": "村委会东 200 米",
    "phone": "0371-6200 0000",
}


@pytest.fixture
def box(session):
    """A gift box of two packs of one peach lot and a grape lot of another household, with
    Chinese names, inputs and findings throughout (what a Chinese cooperative types)."""
    producer.update(session, **PRODUCER)
    farm = make_farm(session, planted_on=date(2026, 3, 1))
    farm.greenhouse.name = "一号桃棚"
    neighbour = Household(code="ZZ002", head_name="王芳")
    session.add(neighbour)
    session.flush()
    grape_house = Greenhouse(code="GH9", name="九号葡萄棚", crop="grape", household_id=neighbour.id)
    session.add(grape_house)
    session.flush()
    grape_cycle = cycles.create_crop_cycle(
        session, grape_house.id, "grape", date(2026, 2, 10), variety="巨峰"
    )
    cycles.add_input(session, farm.cycle, "腐熟羊粪", "800", "kg", date(2026, 3, 1))
    peaches = lots.create_harvest_lot(
        session, farm.cycle, "40", "kg", harvested_on=date(2026, 6, 20), product_id=farm.peach.id
    )
    grapes = lots.create_harvest_lot(session, grape_cycle, "20", "kg", harvested_on=date(2026, 6, 22))
    inspections.record_inspection(
        session, peaches, "登封市农产品检测站", date(2026, 6, 21), "pass", summary="未检出"
    )
    first, second = lots.split_lot(session, peaches, ["5", "5"])
    gift = lots.merge_lots(
        session, [(first, "5"), (second, "5"), (grapes, "4")], product_id=farm.gift_box.id, unit="box"
    )
    session.commit()
    return farm, peaches, grapes, gift


def _text(html: str) -> str:
    """What the reader sees of the page's article: no tags, scripts, attribute values."""
    article = html[html.index("<article") : html.index("</article>")]
    article = re.sub(r"<(script|style)\b.*?</\1>", " ", article, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article))


# What a Chinese page may still show in Latin letters: identifiers, units and symbols.
ALLOWED = {"GS1", "EC", "pH", "mS", "cm", "kg", "mg"}


def _latin_words(text: str, *data: str) -> list[str]:
    for value in data:  # codes, lot numbers, URLs: data, not our words
        text = text.replace(value, " ")
    text = re.sub(r"https?://\S+", " ", text)
    return [w for w in re.findall(r"[A-Za-z][A-Za-z0-9']+", text) if w not in ALLOWED]


def test_a_chinese_page_has_no_english_words_of_ours(client, session, box):
    _farm, peaches, grapes, gift = box
    recall.recall_lot(session, peaches, "抽检农残超标")  # the box is recalled with it
    session.commit()
    html = client.get(f"/t/{gift.code}?lang=zh_CN").get_data(as_text=True)
    text = _text(html)
    data = [gift.code, gift.lot_number, peaches.lot_number, grapes.lot_number]
    assert _latin_words(text, *data) == [], text
    for chinese in (
        "桃",
        "葡萄",
        "登封市赵庄村田园种植专业合作社",
        "河南省登封市大金店镇赵庄村",
        "0371-6200 0000",
    ):
        assert chinese in text, chinese
    assert "peach" not in text and "(from" not in text


def test_the_english_page_is_english(client, session, box):
    *_, gift = box
    text = _text(client.get(f"/t/{gift.code}?lang=en").get_data(as_text=True))
    for english in (
        "Producer",
        "Place of origin",
        "peach",
        "grape",
        "Where and how it grew",
        "Lab's findings",
    ):
        assert english in text, english
    assert "产地与生长过程" not in text and "定植" not in text and "生产者" not in text


def test_crop_names_come_from_the_crop_catalogue():
    assert crop_names("peach") == ("桃", "peach")
    assert crop_names("Peaches") == ("桃", "peach")
    assert crop_names("黄桃") == ("黄桃", "peach")  # typed in Chinese: kept as typed
    assert crop_names("mushroom") == ("蘑菇", "mushroom")
    assert crop_names("金针菇") == ("金针菇", "金针菇")  # unknown: as typed in both


def test_staff_pages_name_the_crop_in_the_pages_language(client, session, make_user, box):
    """The staff's cycle page, trace index and check-in list said "peach" on Chinese pages."""
    farm, *_ = box
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    for path in (f"/trace/cycles/{farm.cycle.id}", "/trace/"):
        zh = client.get(path + "?lang=zh_CN").get_data(as_text=True)
        assert "桃" in zh and ">peach" not in zh and "peach ·" not in zh, path
        en = client.get(path + "?lang=en").get_data(as_text=True)
        assert "peach" in en, path


def test_a_gift_box_lists_each_origin_once_with_its_dates(client, box):
    *_, peaches, grapes, gift = box
    html = client.get(f"/t/{gift.code}?lang=zh_CN").get_data(as_text=True)
    # two packs of the same peach lot went in: one origin, one household, not "赵建国, 赵建国"
    assert html.count(f'data-origin="{peaches.lot_number}"') == 1
    assert html.count(f'data-origin="{grapes.lot_number}"') == 1
    grown_by = re.search(r'data-fact="grown-by">(.*?)</div>', html, re.S).group(1)
    assert grown_by.count("赵建国") == 1 and grown_by.count("王芳") == 1
    summaries = dict(re.findall(r'data-origin-summary="([^"]+)">(.*?)</li>', html, re.S))
    assert "2026-03-01" in summaries[peaches.lot_number] and "2026-06-20" in summaries[peaches.lot_number]
    assert "2026-02-10" in summaries[grapes.lot_number] and "2026-06-22" in summaries[grapes.lot_number]
    # one planting date for a box of two plantings would be a lie: the hero has none
    assert 'data-fact="planted"' not in html


def test_the_recall_banner_names_the_cooperative_and_its_phone(client, session, box):
    *_, peaches, _grapes, gift = box
    recall.recall_lot(session, peaches, "抽检农残超标")
    session.commit()
    for code in (peaches.code, gift.code):
        html = client.get(f"/t/{code}?lang=zh_CN").get_data(as_text=True)
        banner = html[html.index("data-recalled") : html.index("</section>")]
        assert "登封市赵庄村田园种植专业合作社" in banner and "0371-6200 0000" in banner
        assert 'href="tel:0371-62000000"' in banner
        assert "河南省登封市大金店镇赵庄村村委会东 200 米" in banner
    box_banner = client.get(f"/t/{gift.code}?lang=zh_CN").get_data(as_text=True)
    assert f"因其来源批次 {peaches.lot_number} 被召回而一并召回" in box_banner
    assert gift.recall_reason == "抽检农残超标"  # stored as given, no "(from …)"
    english = client.get(f"/t/{gift.code}?lang=en").get_data(as_text=True)
    assert f"Recalled together with lot {peaches.lot_number}" in english


def test_every_page_shows_the_producer(client, session, box):
    farm, peaches, _grapes, gift = box
    for lot in (peaches, gift, *lots.split_lot(session, peaches, ["1"])):
        session.commit()
        html = client.get(f"/t/{lot.code}?lang=zh_CN").get_data(as_text=True)
        assert "data-producer" in html and "产地" in html and "河南省登封市大金店镇赵庄村" in html
        assert "data-foot-producer" in html


# --- the lookup counter -------------------------------------------------------------------


def _count(html: str) -> int | None:
    found = re.search(r'data-lookups="(\d+)"', html)
    return int(found.group(1)) if found else None


def test_each_lookup_is_counted_and_the_first_time_shown(app, client, session, box):
    *_, gift = box
    with clock.frozen(datetime(2026, 6, 23, 2, 0, tzinfo=UTC)):
        first = client.get(f"/t/{gift.code}?lang=zh_CN").get_data(as_text=True)
    assert _count(first) == 1 and "您是第 1 次查询此码" in first
    with clock.frozen(datetime(2026, 6, 24, 2, 0, tzinfo=UTC)):
        client.get(f"/t/{gift.code}")
        third = client.get(f"/t/{gift.code}?lang=zh_CN").get_data(as_text=True)
    # the story came from the cache (built once), the count did not
    assert app.extensions["trace_cache"].hits >= 2
    assert _count(third) == 3 and "您是第 3 次查询，首次查询于 2026-06-23 10:00" in third
    english = client.get(f"/t/{gift.code}?lang=en").get_data(as_text=True)
    assert "This code has been looked up 4 times; first on 2026-06-23 10:00" in english
    row = session.get(LotLookup, gift.id)
    session.refresh(row)
    assert row.lookups == 4 and row.last_at > row.first_at
    # nothing but the count and two times: no address, no browser
    assert {c.name for c in LotLookup.__table__.columns} == {"lot_id", "lookups", "first_at", "last_at"}


def test_previews_heads_and_robots_are_not_counted(client, session, make_user, box):
    farm, *_, gift = box
    client.get(f"/t/{gift.code}")
    assert client.head(f"/t/{gift.code}").status_code == 200
    robot = client.get(f"/t/{gift.code}", headers={"User-Agent": "Mozilla/5.0 (compatible; Baiduspider/2.0)"})
    assert _count(robot.get_data(as_text=True)) == 1
    make_user("kuaiji", "official")
    make_user("zhaolin", "farmer", household_id=farm.household.id)
    for username in ("kuaiji", "zhaolin"):
        login(client, username)
        html = client.get(f"/t/{gift.code}?lang=zh_CN").get_data(as_text=True)
        assert _count(html) == 1 and "您的预览不计入" in html
        client.post("/logout")
    make_user("customer", "customer")
    login(client, "customer")  # a customer who bought it is a customer looking it up
    assert _count(client.get(f"/t/{gift.code}").get_data(as_text=True)) == 2
    assert lookups.current(session, gift.id).count == 2


def test_concurrent_lookups_never_lose_a_count(app, session, box):
    """Twenty phones scan the same code at once, against a real threaded server (SQLite and
    PostgreSQL): every scan is counted once, including the first ones racing to insert."""
    *_, gift = box
    scans = 20
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    start = threading.Barrier(scans)

    def scan(_i: int) -> int:
        with requests.Session() as phone:
            start.wait()
            response = phone.get(f"http://127.0.0.1:{server.server_port}/t/{gift.code}", timeout=60)
            assert response.status_code == 200
            return _count(response.text) or 0

    try:
        with ThreadPoolExecutor(scans) as pool:
            seen = list(pool.map(scan, range(scans)))
    finally:
        server.shutdown()
        thread.join(timeout=5)
    session.expire_all()
    assert session.scalar(select(LotLookup.lookups).where(LotLookup.lot_id == gift.id)) == scans
    assert sorted(seen) == list(range(1, scans + 1))  # each scan got its own number


def test_the_demo_pages_read_in_chinese(client, session, make_user):
    """The demo village (as `flask demo seed` builds it): the gift box and the recalled lot in
    Chinese, with the cooperative on every page; its labels one per pack."""
    from coop import demo as coop_demo
    from shop import demo as shop_demo

    ctx: dict = {"password": None, "accounts": []}
    coop_demo.seed_members(session, ctx)
    households = ctx["households"]
    for i, (code, crop) in enumerate([("GH-PEACH", "peach"), ("GH-GRAPE", "grape")]):
        session.add(Greenhouse(code=code, name=code, crop=crop, household_id=households[i].id))
    session.flush()
    shop_demo.seed(session, ctx)
    made = shop_demo.seed_trace(session, ctx)
    session.commit()
    for code in (made["box_code"], made["recalled_code"], made["packs"][0]):
        html = client.get(f"/t/{code}?lang=zh_CN").get_data(as_text=True)
        text = _text(html)
        for english in ("peach", "grape", "pesticides tested", "above limit", "(from", "Digital Link"):
            assert english not in text, (code, english)
        assert "登封市赵庄村田园种植专业合作社" in text and "0371-6200 0000" in text
        assert "河南省登封市大金店镇赵庄村" in text and "您是第 1 次查询此码" in text
    recalled = client.get(f"/t/{made['recalled_code']}").get_data(as_text=True)
    banner = recalled[recalled.index("data-recalled") : recalled.index("</section>")]
    assert "0371-6200 0000" in banner
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    lot = lots.lot_by_code(session, made["code"])
    sheet = client.get(f"/trace/labels?lot={lot.id}").get_data(as_text=True)
    assert len(re.findall(r'data-label="', sheet)) == len(made["packs"])
