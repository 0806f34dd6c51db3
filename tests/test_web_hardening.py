"""The web glue as an attacker meets it: security headers on every kind of response, no inline
script anywhere, a bearer header that authenticates or is refused (never a CSRF bypass for a
logged-in browser), one error page and one JSON error shape, and 500s that are logged pages."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
from sqlalchemy import func, select

from core.config import PROJECT_ROOT
from core.models import User
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from, login, make_test_app

HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def _assert_secure(response, *, production: bool = False) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no hosts
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    hsts = response.headers.get("Strict-Transport-Security")
    assert (hsts is not None and "max-age=" in hsts) if production else hsts is None


@pytest.fixture
def official_token(session, make_user):
    from core import auth

    user = make_user("kuaiji", "official")
    _row, token = auth.issue_token(session, session.merge(user), "script")
    session.commit()
    return token


def test_every_kind_of_response_carries_the_security_headers(client, make_user, official_token):
    responses = {
        "page": client.get("/"),
        "login form": client.get("/login"),
        "static file": client.get("/static/js/confirm.js"),
        "redirect": client.get("/coop/"),  # anonymous: to the login page
        "404 page": client.get("/no/such/page"),
        "405": client.get("/logout"),
        "json 401": client.get("/api/v1/greenhouses"),
        "json": client.get("/api/v1/greenhouses", headers={"Authorization": f"Bearer {official_token}"}),
        "json 404": client.get("/api/v1/nothing-here"),
        "bad request": client.get("/shop/?q=a%00b"),
    }
    assert responses["redirect"].status_code == 302 and responses["json"].status_code == 200
    for name, response in responses.items():
        response.get_data()
        _assert_secure(response), name


def test_hsts_only_in_production(settings):
    production = dataclasses.replace(settings, env="production")
    app = make_test_app(production)
    client = app.test_client()
    _assert_secure(client.get("/"), production=True)
    _assert_secure(client.get("/static/js/confirm.js"), production=True)
    _assert_secure(client.get("/nowhere"), production=True)


def test_no_template_has_inline_script():
    """script-src 'self' would silently break an onclick= or an inline <script>: there are none."""
    handler = re.compile(r"\son[a-z]+\s*=", re.I)
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
    offenders = []
    for path in (PROJECT_ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        if handler.search(text) or inline.search(text) or "javascript:" in text:
            offenders.append(path.name)
    assert offenders == []


def test_the_print_and_confirm_buttons_are_data_attributes_the_script_handles(client, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    page = client.get("/coop/reports/statements").get_data(as_text=True)
    assert "data-print" in page and "window.print" not in page
    script = client.get("/static/js/confirm.js").get_data(as_text=True)
    assert "data-print" in script and "data-confirm" in script


# --- a bearer header authenticates or is refused -----------------------------------------


def _logged_in_official(csrf_app, make_user):
    make_user("kuaiji", "official")
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"username": "kuaiji", "password": DEFAULT_PASSWORD, "csrf_token": token})
    assert r.status_code == 302
    return client


def _households(session) -> int:
    from coop.models import Household

    session.expire_all()
    return session.scalar(select(func.count()).select_from(Household))


HOUSEHOLD = {"action": "add", "code": "ZZ999", "head_name": "冒名顶替", "members": "3"}


@pytest.mark.parametrize("header", ["Bearer junk", "bearer junk", "Bearer ", "Bearer ty_notarealtoken"])
def test_a_junk_bearer_header_never_skips_csrf_for_a_logged_in_browser(csrf_app, session, make_user, header):
    """Found by the hostile tester: any bearer header skipped CSRF while the cookie still logged in."""
    from coop.ledger import ensure_chart

    ensure_chart(session)
    session.commit()
    books = session
    client = _logged_in_official(csrf_app, make_user)
    assert client.get("/coop/members").status_code == 200  # the cookie session works
    r = client.post("/coop/members", data=HOUSEHOLD, headers={"Authorization": header})
    assert r.status_code == 401
    assert _households(books) == 0  # nothing was written
    # and the same POST without the header still needs its CSRF token
    assert client.post("/coop/members", data=HOUSEHOLD).status_code == 400
    assert _households(books) == 0


def test_a_valid_bearer_token_is_the_user_and_the_cookie_is_ignored(csrf_app, session, make_user):
    from core import auth

    client = _logged_in_official(csrf_app, make_user)  # the cookie belongs to an official
    customer = make_user("chen", "customer")
    _row, token = auth.issue_token(session, session.merge(customer), "phone")
    session.commit()
    bearer = {"Authorization": f"Bearer {token}"}
    r = client.get("/coop/", headers=bearer)
    assert r.status_code == 403  # the token's customer, not the cookie's official
    assert "Set-Cookie" not in r.headers  # the cookie session is neither read nor written
    r = client.post("/shop/cart/add", data={"product_id": "404"}, headers=bearer)
    assert r.status_code == 404  # reached the view: a token request needs no CSRF token
    assert client.get("/coop/").status_code == 200  # the browser's own session is untouched


def test_a_revoked_token_is_refused_with_json(session, client, official_token):
    from core import auth

    user = session.scalar(select(User).where(User.username == "kuaiji"))
    auth.revoke_tokens(session, user)
    session.commit()
    r = client.get("/api/v1/greenhouses", headers={"Authorization": f"Bearer {official_token}"})
    assert r.status_code == 401 and r.is_json
    assert set(r.get_json()["error"]) == {"status", "message"}


# --- one error page, one JSON error shape --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/api/v1/nothing", {}, 404),
        ("/api/v1/greenhouses", {}, 401),
        ("/no/such/page", {"Accept": "application/json"}, 404),
        ("/logout", {"Accept": "application/json"}, 405),
        ("/iot/", {"Authorization": "Bearer junk"}, 401),  # a program with a token gets JSON
    ],
)
def test_json_errors_have_one_shape(client, path, headers, status):
    r = client.get(path, headers=headers)
    assert r.status_code == status and r.is_json
    body = r.get_json()
    assert list(body) == ["error"] and body["error"]["status"] == status and body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/no/such/page?lang=en", 404, "There is nothing at this address."),
        ("/logout?lang=en", 405, "This address does not take that kind of request."),
        ("/shop/?q=a%00b&lang=en", 400, "NUL byte"),
        ("/no/such/page", 404, "此地址没有内容"),
    ],
)
def test_pages_get_the_error_page(client, path, status, text):
    r = client.get(path)
    assert r.status_code == status and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert 'class="narrow error-page"' in page and text in page


def test_an_uncaught_exception_is_a_logged_500_page_in_production(settings, caplog):
    production = dataclasses.replace(settings, env="production")
    app = make_test_app(production, PROPAGATE_EXCEPTIONS=False, TESTING=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        page = client.get("/boom")
        json = client.get("/boom", headers={"Accept": "application/json"})
    assert page.status_code == 500 and 'class="narrow error-page"' in page.get_data(as_text=True)
    assert "RuntimeError" not in page.get_data(as_text=True)  # no traceback shown
    _assert_secure(page, production=True)
    assert json.status_code == 500 and json.get_json()["error"]["status"] == 500
    assert any("a bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_an_integer_beyond_64_bits_in_an_id_field_is_no_id(client, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    r = client.get("/trace/labels?lot=99999999999999999999999&copies=99999999999999999999999")
    assert r.status_code in (200, 404)  # no such lot (an OverflowError in the driver before)
    r = client.post("/iot/admin/quarantine/replay", data={"id": "99999999999999999999999"})
    assert r.status_code in (302, 403)


def test_a_nul_byte_is_a_bad_request_everywhere(client, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    assert client.get("/iot/g/GH%00X").status_code == 400
    assert client.post("/coop/vouchers/new", data={"summary": "a\x00b"}).status_code == 400
    assert client.post("/login", data={"username": "kuai\x00ji", "password": "x"}).status_code == 400


def test_json_never_carries_nan_or_infinity(client, session, make_user):
    """Found by the hostile tester: area_m2=1e400 was stored as Inf and the API wrote invalid JSON.
    Forms refuse it now; a value that still got in (here written directly) comes out as null."""
    import json

    from iot import registry
    from iot.models import Greenhouse

    registry.create_greenhouse(session, "GH-INF", "无穷大棚", area_m2=100)
    session.commit()
    session.execute(Greenhouse.__table__.update().values(area_m2=float("inf")))
    session.commit()
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    r = client.get("/api/v1/greenhouses")
    assert r.status_code == 200

    def refuse(token):
        raise AssertionError(f"invalid JSON token {token}")

    body = json.loads(r.get_data(as_text=True), parse_constant=refuse)
    assert [g["area_m2"] for g in body["greenhouses"]] == [None]


def test_a_greenhouse_area_of_1e400_is_refused_on_the_form(client, session, make_user):
    from iot import registry
    from iot.models import Greenhouse

    registry.create_greenhouse(session, "GH1", "桃棚", area_m2=100)
    session.commit()
    make_user("admin", "admin")
    login(client, "admin")
    for area in ("1e400", "NaN", "Infinity", "-1"):
        r = client.post(
            "/iot/admin/greenhouses/GH1", data={"name": "桃棚", "area_m2": area, "timezone": "Asia/Shanghai"}
        )
        assert r.status_code in (200, 400), area
        session.expire_all()
        assert session.scalar(select(Greenhouse.area_m2)) == 100, area


def test_a_password_beyond_1024_characters_is_refused_before_hashing(client, make_user):
    make_user("kuaiji", "official")
    r = client.post("/login", data={"username": "kuaiji", "password": "x" * 5000})
    assert r.status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept-Language": "zz;q=NaN, *;q=1e999"},
        {"Accept-Language": "x" * 10000},
        {"Cookie": "session=garbage.garbage.garbage"},
        {"Accept": "application/json;q=NaN"},
        {"Authorization": "Bearer " + "x" * 10000},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"If-Modified-Since": "9999-99-99"},
        {"Range": "bytes=999999999999999999999-"},
    ],
    ids=lambda h: next(iter(h)),
)
def test_hostile_headers_are_no_5xx(client, make_user, headers):
    make_user("kuaiji", "official")
    for path in ("/", "/static/js/confirm.js", "/api/v1/greenhouses", "/lang/en", "/coop/"):
        r = client.get(path, headers=headers)
        assert r.status_code < 500, (path, r.status_code)
        _assert_secure(r)


def test_a_refusal_with_a_percent_sign_shows_one(app):
    """Found by the route walk's review: a template with ``%%`` and no parameters showed "60%%"."""
    from flask_babel import gettext

    from core.errors import DomainError

    error = DomainError(
        "at least 60%% of a cooperative's distributable surplus is returned by transaction volume"
    )
    assert str(error).startswith("at least 60% of")
    with app.test_request_context("/"):
        assert error.translated(gettext).endswith("不得低于 60%")
    assert str(DomainError("no %(what)s given")) == "no %(what)s given"  # a missing parameter: as it is
