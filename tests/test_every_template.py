"""Every template renders, in Chinese and in English, without an exception.

The demo village is seeded; every role crawls its pages in the language and sends each form
it finds with the form's own values (so refusal pages, e.g. a product form sent back with
an error, render too). Templates are recorded as they render (Flask's ``template_rendered``
signal); a template no page reached is rendered directly with a plausible context in
``DIRECT`` or the test names it. Jinja's gettext applies %-formatting to every string, so a
bare ``%`` in ``_()`` fails here in both languages.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from flask import template_rendered

from core.config import PROJECT_ROOT
from tests.conftest import login
from tests.test_every_route import PASSWORD, PICKUP, ROLES, Walk

TEMPLATES = PROJECT_ROOT / "templates"
LANGS = ("zh_CN", "en")


def _page_templates() -> set[str]:
    """Templates a view renders (macros, partials and the base are rendered through them)."""
    names = set()
    for path in TEMPLATES.rglob("*.html"):
        name = path.relative_to(TEMPLATES).as_posix()
        if Path(name).name.startswith("_") or name in ("base.html", "macros.html"):
            continue
        names.add(name)
    return names


def test_every_template_compiles(app):
    for path in TEMPLATES.rglob("*.html"):
        app.jinja_env.get_template(path.relative_to(TEMPLATES).as_posix())  # a syntax error raises


@pytest.mark.xdist_group("demo")
@pytest.mark.parametrize(
    "lang", [LANGS[0], *(pytest.param(lang, marks=pytest.mark.slow) for lang in LANGS[1:])]
)
def test_every_template_renders_in_both_languages(app, session, snapshot, lang):
    from app import seed_demo
    from core.web import EXT

    snapshot(f"demo:{PASSWORD}", lambda: seed_demo(session, PASSWORD))
    rendered: set[str] = set()
    failures: list[str] = []

    def record(sender, template, context, **extra):
        rendered.add(template.name)

    seeds = [r.rule for r in app.url_map.iter_rules() if not r.arguments and "GET" in r.methods]
    with template_rendered.connected_to(record, app):
        # an order, so the order pages and the staff desk have one
        customer = app.test_client()
        customer.get(f"/lang/{lang}")
        login(customer, "customer", PASSWORD)
        customer.post("/shop/cart/add", data={"product_id": "1", "quantity": "1"})
        customer.post("/shop/checkout", data=PICKUP)
        for role, username in ROLES.items():
            client = app.test_client()
            client.get(f"/lang/{lang}")
            if username:
                login(client, username, PASSWORD)
            # something in the cart, so the cart and checkout pages render
            client.post("/shop/cart/add", data={"product_id": "1", "quantity": "1"})
            walk = Walk(app)
            walk.crawl(client, [*seeds, "/shop/orders", "/shop/recent", "/nowhere", "/t/NO-SUCH-CODE"])
            failures += [f"{role} {lang}: {f}" for f in walk.failures]
            for (endpoint, method), values in sorted(walk.urls.items()):
                if method != "POST" or endpoint in ("core.logout",):
                    continue
                url = app.url_map.bind("localhost").build(endpoint, values)
                try:
                    client.post(url, data=walk.forms.get(endpoint, {}))
                except Exception as exc:
                    error = traceback.format_exception_only(exc)[-1]
                    failures.append(f"{role} {lang}: POST {url} -> {error}")
        guesser = app.test_client()  # too many unknown codes from one address: the 429 page
        guesser.environ_base["REMOTE_ADDR"] = "192.0.2.1"
        guesser.get(f"/lang/{lang}")
        for _ in range(app.extensions[EXT]["settings"].trace_max_misses + 1):
            guesser.get("/t/NO-SUCH-CODE")
    assert not failures, "\n".join(failures)
    missing = _page_templates() - rendered
    assert not missing, f"never rendered in {lang}: {sorted(missing)}"
