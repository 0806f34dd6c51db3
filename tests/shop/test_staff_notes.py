"""Staff notes on an order (a recall, a refused payment, a failed refund) are said in the
reader's language: the note keeps its template and parameters, never one language's text."""

from __future__ import annotations

from shop import notes, orders, payments
from shop.models import Order
from shop.trace import recall
from tests.conftest import login
from tests.shop.test_recall_every_step import _order_for_pack, packed_farm  # noqa: F401


def _flag_box(html: str) -> str:
    start = html.index('data-testid="attention"')
    return html[
        start : html.index("</div>", start)
        if "</section>" not in html[start:]
        else html.index("</section>", start)
    ]


def test_a_recall_flag_reads_in_chinese_on_a_chinese_page_and_in_english_on_an_english_one(
    client,
    session,
    make_user,
    packed_farm,  # noqa: F811
):
    farm, lot, packs = packed_farm
    order = _order_for_pack(client, session, farm, packs[0])
    payments.mark_paid(session, order, method="cash", amount_fen=order.total_fen, reference="cash:1")
    session.commit()
    recall.recall_lot(session, lot, "农残超标", flag_orders=orders.flag_recalled)
    session.commit()
    # the customer's own notice (same browser, before anyone logs in) names the product in Chinese
    mine = client.get(f"/shop/order/{order.token}?lang=zh_CN").get_data(as_text=True)
    notice = mine[mine.index("data-recall-notice") :]
    assert farm.peach.name_zh in notice[:2000] and farm.peach.name_en not in notice[:2000]
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    for path in (f"/shop/staff/order/{order.number}", "/shop/staff/"):
        zh = _flag_box(client.get(path + "?lang=zh_CN").get_data(as_text=True))
        assert f"批次 {packs[0].lot_number} 已召回" in zh and "Recalled lot" not in zh
        en = _flag_box(client.get(path + "?lang=en").get_data(as_text=True))
        assert f"Recalled lot {packs[0].lot_number}: do not hand over" in en


def test_notes_are_not_repeated_and_old_plain_text_is_shown_as_it_is(session):
    text = notes.add(None, "Recalled lot %(lots)s: do not hand over; refund the customer.", lots="L1")
    assert notes.add(text, "Recalled lot %(lots)s: do not hand over; refund the customer.", lots="L1") == text
    both = notes.add("Paid 1 fen for an order of 2200 fen.", "Its stock had been put back on sale.")
    assert notes.texts(both) == [
        "Paid 1 fen for an order of 2200 fen.",
        "Its stock had been put back on sale.",
    ]
    nested = notes.add(
        None, "A Stripe payment was not accepted: %(why)s; refund it.", why=notes.note("x %(n)s", n=3)
    )
    assert notes.english(nested) == "A Stripe payment was not accepted: x 3; refund it."
    assert session.query(Order).count() == 0
