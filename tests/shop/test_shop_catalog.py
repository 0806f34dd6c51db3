"""The catalogue as a visitor sees it: stock from lots, search, categories, product pages."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import event

from tests.conftest import login


def test_catalogue_lists_products_with_stock_from_lots(client, shop):
    peach = shop.product("yellow-peach", price=690, stock=[12, 8])
    shop.product("millet", price=4500, unit="bag", name_zh="小米", name_en="Millet", stock=[])
    html = client.get("/shop/?lang=en").get_data(as_text=True)
    assert "Yellow peaches" in html and "¥6.90" in html
    assert "In stock: 20 jin" in html
    assert "Sold out" in html  # millet has no lots
    # a recalled lot no longer counts
    from shop.trace.models import HarvestLot

    lot = shop.session.query(HarvestLot).filter_by(product_id=peach.id).first()
    from core.db import utcnow

    lot.recalled_at = utcnow()
    shop.session.commit()
    assert "In stock: 8 jin" in client.get("/shop/?lang=en").get_data(as_text=True)


def test_search_and_category_filter(client, shop):
    fruit = shop.category("fruit", "水果", "Fruit")
    grains = shop.category("grains", "杂粮", "Small grains")
    shop.product("yellow-peach", category=fruit, stock=[5])
    shop.product("millet", unit="bag", name_zh="小米", name_en="Millet", category=grains, stock=[5])
    html = client.get("/shop/?q=peach&lang=en").get_data(as_text=True)
    assert 'data-product="yellow-peach"' in html and 'data-product="millet"' not in html
    html = client.get("/shop/?q=小米").get_data(as_text=True)
    assert 'data-product="millet"' in html and 'data-product="yellow-peach"' not in html
    html = client.get("/shop/?category=fruit").get_data(as_text=True)
    assert 'data-product="yellow-peach"' in html and 'data-product="millet"' not in html
    assert "杂粮" in html  # category chips, Chinese by default


def test_off_season_products_are_hidden_and_cannot_be_added(client, shop):
    today = date.today()
    p = shop.product("melon", name_en="Honey melon", stock=[5], on_sale_from=today + timedelta(days=30))
    assert 'data-product="melon"' not in client.get("/shop/").get_data(as_text=True)
    page = client.get("/shop/p/melon?lang=en").get_data(as_text=True)
    assert "Not in season" in page
    client.post("/shop/cart/add", data={"product_id": p.id, "quantity": "1"})
    assert "Honey melon" not in client.get("/shop/cart?lang=en").get_data(as_text=True)


def test_product_page_shows_the_producer_and_lots(client, shop):
    h = shop.household("ZZ007", "王秀英")
    p = shop.product("yellow-peach", household=h, stock=[3, 4])
    html = client.get("/shop/p/yellow-peach?lang=en").get_data(as_text=True)
    assert "王秀英" in html and "ZZ007" in html
    assert "Oldest first" in html  # two lots: the customer may pick one
    assert p.name_en in html


def test_catalogue_runs_a_fixed_number_of_queries(app, client, shop):
    fruit = shop.category()
    for i in range(3):
        shop.product(f"p{i}", category=fruit, stock=[5])
    engine = app.extensions["tianyuan"]["db"].engine
    counted = []
    listener = lambda *a, **k: counted.append(1)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        client.get("/shop/")
        few = len(counted)
        for i in range(3, 15):
            shop.product(f"p{i}", category=fruit, stock=[5, 6])
        counted.clear()
        client.get("/shop/")
        many = len(counted)
        counted.clear()
        client.get("/shop/p/p7")
        product_page = len(counted)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert many == few <= 3
    assert product_page <= 4


def test_staff_edit_product_price_is_audited(client, make_user, shop):
    p = shop.product("yellow-peach", price=690, stock=[5])
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    form = {
        "name_zh": "黄桃",
        "name_en": "Yellow peaches",
        "unit": "jin",
        "price": "7.50",
        "active": "1",
        "category_id": "",
        "description_zh": "",
        "description_en": "",
        "commission_pct": "10",
    }
    r = client.post(f"/shop/staff/products/{p.id}/edit", data=form)
    assert r.status_code == 302
    assert "¥7.50" in client.get("/shop/").get_data(as_text=True)
    stock_page = client.get(f"/shop/staff/products/{p.id}/stock").get_data(as_text=True)
    assert "shop.product.update" in stock_page and "750" in stock_page
    # a stock correction needs a reason and is recorded
    from shop.trace.models import HarvestLot

    lot = shop.session.query(HarvestLot).filter_by(product_id=p.id).one()
    client.post(
        f"/shop/staff/products/{p.id}/stock", data={"lot_id": lot.id, "remaining": "3", "reason": "bruised"}
    )
    assert shop.stock(p) == 3
    assert "bruised" in client.get(f"/shop/staff/products/{p.id}/stock").get_data(as_text=True)


def test_customers_cannot_open_the_order_desk(client, make_user):
    make_user("chen", "customer")
    login(client, "chen")
    assert client.get("/shop/staff/").status_code == 403
    assert client.get("/shop/staff/products").status_code == 403


def test_listing_is_kept_briefly_and_each_visitor_gets_their_own_csrf_token(app, settings, shop):
    from dataclasses import replace

    from tests.conftest import csrf_token_from, make_test_app

    cached = make_test_app(replace(settings, shop_listing_cache_seconds=60), WTF_CSRF_ENABLED=True)
    peach = shop.product(stock=[10])
    alice, bob = cached.test_client(), cached.test_client()
    first = alice.get("/shop/?lang=en").get_data(as_text=True)
    shop.lot(peach, 5)
    second = bob.get("/shop/?lang=en").get_data(as_text=True)
    assert "In stock: 10 jin" in first and "In stock: 10 jin" in second  # kept for a while
    assert "In stock: 15" in bob.get("/shop/p/yellow-peach?lang=en").get_data(
        as_text=True
    )  # product page is live
    token = csrf_token_from(second.split('class="products"')[1])
    assert token != csrf_token_from(first.split('class="products"')[1])
    r = bob.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "1", "csrf_token": token})
    assert r.status_code == 302
    assert "yellow-peach" in bob.get("/shop/cart").get_data(as_text=True)
    # a search is never served from the kept listing
    assert "In stock: 15 jin" in bob.get("/shop/?lang=en&q=peach").get_data(as_text=True)
