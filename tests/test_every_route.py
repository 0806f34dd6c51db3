"""Every route in the URL map, as every role, with hostile values in every URL variable and
every form or query field the route reads: none answers 5xx (or raises).

The demo village is seeded through the test fixtures (plus two pickup orders and an API
token); a crawl of its pages as admin, as the customer and as the role finds a real value
for each URL variable (an order number and token, a lot, a greenhouse code) and the fields
of each form with their plausible values. The fields a route reads come from those forms and
from the source of its view module. Then each route is called, for each method it allows:

* with each URL variable in turn replaced by a hostile value (the others real);
* with every field it reads set to the same hostile value;
* with each field its view (or a helper of its module it calls) reads, alone;
* with the form's own plausible values and one field at a time made hostile (full sweep).

``make test-fast`` runs a sample of values in two tests (one seeded village per group of roles);
``-m slow`` runs every value, one seeded village per role. CSRF is off in the test app, so
every POST reaches its view. Failures are collected and listed together, so one run names
every 5xx.
"""

from __future__ import annotations

import html
import inspect
import os
import re
import sys
import traceback
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from tests.conftest import login

PASSWORD = "demo-password-1"
ROLES = {
    "anonymous": None,
    "customer": "customer",
    "farmer": "zhaolin",  # a farmer with a household
    "official": "kuaiji",
    "oversight": "licai",
    "admin": "admin",
}

HOSTILE = [
    "99999999999999999999999",  # beyond 64 bits
    "-9223372036854775809",
    "-1",
    "0",
    "1e30",
    "1e999999",
    "NaN",
    "Infinity",
    "-Infinity",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "x" * 3000,
    "a\x00b",
    "１２３",  # full-width digits
    "",
]
SAMPLE = ["99999999999999999999999", "1e999999", "NaN", "9999-12-31", ""]  # the rest: -m slow
FAST = os.environ.get("HYPOTHESIS_PROFILE") == "fast"  # `make test-fast`: a value a role, to stay quick
if FAST:
    SAMPLE = ["99999999999999999999999", "1e999999", "9999-12-31"]

# Routes not walked: logging out ends the role's session (it is walked once, at the end).
SKIP_ENDPOINTS = {"static", "core.logout"}

_FIELD_READ = re.compile(
    r"""(?:request\.(?:args|form|values|files)|\bform|\bargs|\bvalues)\s*
        (?:\.(?:get|getlist)\(\s*|\[\s*)["']([A-Za-z_][\w\-]*)["']""",
    re.VERBOSE,
)
_HREF = re.compile(r"""(?:href|action|src)="([^"#]+)""")
_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_ATTR = re.compile(r"""([\w\-]+)="([^"]*)\"""")
_INPUT = re.compile(r"<(input|select|textarea)\b([^>]*)>", re.I)


def _module_fields(view) -> set[str]:
    """The field names a view's module reads from the request (helpers included)."""
    module = sys.modules.get(inspect.unwrap(view).__module__)
    try:
        source = inspect.getsource(module) if module else ""
    except (OSError, TypeError):
        return set()
    return set(_FIELD_READ.findall(source))


def _view_fields(view) -> set[str]:
    """The field names a view reads itself or through the helpers of its module it calls."""
    view = inspect.unwrap(view)
    module = sys.modules.get(view.__module__)
    seen: set[str] = set()
    fields: set[str] = set()
    todo = [view]
    while todo:
        func = todo.pop()
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            continue
        fields |= set(_FIELD_READ.findall(source))
        for name, helper in vars(module).items():
            if (
                inspect.isfunction(helper)
                and helper.__module__ == view.__module__
                and name not in seen
                and re.search(rf"\b{re.escape(name)}\(", source)
            ):
                seen.add(name)
                todo.append(helper)
    return fields


class Walk:
    """What the crawl found: a real value for each endpoint's URL variables, and each
    form's fields with their plausible values."""

    def __init__(self, app) -> None:
        self.app = app
        self.adapter = app.url_map.bind("localhost")
        self.urls: dict[tuple[str, str], dict] = {}  # (endpoint, method) -> URL values
        self.forms: dict[str, dict[str, str]] = {}  # endpoint -> field -> plausible value
        self.failures: list[str] = []  # pages that failed while crawling

    def match(self, url: str, method: str = "GET"):
        parts = urlsplit(html.unescape(url))
        if parts.netloc or not parts.path.startswith("/"):
            return None
        try:
            return self.adapter.match(parts.path, method=method)
        except (HTTPException, RequestRedirect):
            return None

    def crawl(self, client, seeds: list[str], limit: int = 400) -> None:
        seen: set[str] = set()
        queue = list(seeds)
        while queue and len(seen) < limit:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            try:
                r = client.get(url)
            except Exception as exc:
                self.failures.append(f"crawl GET {url} -> {type(exc).__name__}: {exc}"[:300])
                continue
            if r.status_code >= 500:
                self.failures.append(f"crawl GET {url} -> {r.status_code}")
            if r.status_code != 200 or "html" not in (r.mimetype or ""):
                continue
            page = r.get_data(as_text=True)
            for form_attrs, body in _FORM.findall(page):
                attrs = dict(_ATTR.findall(form_attrs))
                method = attrs.get("method", "get").upper()
                found = self.match(attrs.get("action") or url, method)
                if found is None:
                    continue
                endpoint, values = found
                self.urls.setdefault((endpoint, method), values)
                fields = self.forms.setdefault(endpoint, {})
                for _tag, input_attrs in _INPUT.findall(body):
                    a = dict(_ATTR.findall(input_attrs))
                    if "name" in a and a["name"] != "csrf_token":
                        fields.setdefault(a["name"], html.unescape(a.get("value", "1")))
            for link in _HREF.findall(page):
                found = self.match(link)
                if found is None:
                    continue
                endpoint, values = found
                if (endpoint, "GET") not in self.urls:
                    self.urls[(endpoint, "GET")] = values
                    queue.append(html.unescape(link))


def _seed_and_crawl(app, session, snapshot) -> Walk:
    """Seed the demo village and find real URL values and forms (as admin and as a customer
    with two orders, so order pages have real numbers and tokens)."""
    from app import seed_demo

    snapshot(f"demo:{PASSWORD}", lambda: seed_demo(session, PASSWORD))
    walk = Walk(app)
    seeds = [r.rule for r in app.url_map.iter_rules() if not r.arguments and "GET" in r.methods]
    admin = app.test_client()
    login(admin, "admin", PASSWORD)
    walk.crawl(admin, seeds)
    customer = app.test_client()
    login(customer, "customer", PASSWORD)
    for _ in range(2):
        product = walk.forms.get("shop.cart_add", {}).get("product_id", "1")
        customer.post("/shop/cart/add", data={"product_id": product, "quantity": "1"})
        customer.post("/shop/checkout", data=PICKUP)
    admin.post("/account/tokens", data={"name": "walk"})  # a token to revoke
    walk.crawl(customer, ["/shop/orders", "/shop/recent"])
    walk.crawl(admin, ["/shop/staff/", "/iot/alerts", "/account/tokens", "/coop/review"], limit=800)
    _borrow(app, walk)
    return walk


def _role_client(app, walk: Walk, role: str):
    """A client logged in as ``role``; its own pages add what only it sees (a farmer's lots)."""
    client = app.test_client()
    if ROLES[role]:
        assert login(client, ROLES[role], PASSWORD).status_code == 302
        seeds = [r.rule for r in app.url_map.iter_rules() if not r.arguments and "GET" in r.methods]
        walk.crawl(client, seeds)
    return client


PICKUP = {"name": "陈女士", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "cash"}


# URL variables no page links to (JSON API, digital links): borrowed from a page's route
def _borrow(app, walk: Walk) -> None:
    found = {endpoint: values for (endpoint, _m), values in walk.urls.items()}
    greenhouse = found.get("iot.greenhouse", {})
    alert = found.get("iot.acknowledge", {})
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("iot_api.") and (rule.endpoint, "GET") not in walk.urls:
            walk.urls[(rule.endpoint, "GET")] = {**greenhouse, **alert}
        for method in rule.methods:
            if rule.endpoint.startswith("iot_api.") and (rule.endpoint, method) not in walk.urls:
                walk.urls[(rule.endpoint, method)] = {**greenhouse, **alert}


def _is_int(rule, arg: str) -> bool:
    return type(rule._converters[arg]).__name__.endswith("IntConverter")


def _requests(app, walk: Walk, values: list[str], one_at_a_time: bool) -> Iterator[tuple]:
    """(method, url, field values) to send, for every rule and method."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in SKIP_ENDPOINTS:
            continue
        fields = _module_fields(app.view_functions[rule.endpoint]) | set(walk.forms.get(rule.endpoint, {}))
        fields.discard("csrf_token")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            real = walk.urls.get((rule.endpoint, method)) or walk.urls.get((rule.endpoint, "GET")) or {}
            base = {arg: real.get(arg, 1 if _is_int(rule, arg) else "x") for arg in rule.arguments}

            def build(url_values: dict, pattern: str = rule.rule) -> str:
                path = pattern
                for arg, value in url_values.items():
                    path = re.sub(rf"<(?:[^:>]+:)?{re.escape(arg)}>", quote(str(value), safe=""), path)
                return path

            url = build(base)
            yield method, url, {}
            for arg in rule.arguments:  # each URL variable hostile, the rest real
                for value in values:
                    if value:
                        yield method, build({**base, arg: value}), {}
            for value in values:  # every field hostile at once
                yield method, url, dict.fromkeys(fields, value)
            for name in sorted(_view_fields(app.view_functions[rule.endpoint])):  # each field alone
                for value in values:
                    yield method, url, {name: value}
            plausible = walk.forms.get(rule.endpoint, {})
            if one_at_a_time and plausible:
                for name in plausible:
                    for value in values:
                        yield method, url, {**plausible, name: value}


def _sweep(app, walk: Walk, role: str, values: list[str], one_at_a_time: bool) -> list[str]:
    client = _role_client(app, walk, role)
    failures: list[str] = []
    for method, url, data in _requests(app, walk, values, one_at_a_time):
        kwargs = {"query_string": data} if method == "GET" else {"data": data}
        try:
            r = client.open(url, method=method, **kwargs)
            r.get_data()  # a streamed body fails only when read
            status = r.status_code
            problem = f"{status}" if status >= 500 else None
        except Exception as exc:  # the app raised instead of answering
            problem = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
        if problem:
            shown = {k: (v[:20] + "…" if len(v) > 20 else v) for k, v in data.items()}
            failures.append(f"{role} {method} {url[:120]} {shown} -> {problem}")
        if ROLES[role] and method != "GET":
            with client.session_transaction() as s:
                logged_in = "_user_id" in s
            if not logged_in:  # a hostile POST may end the session (a password form): log in again
                login(client, ROLES[role], PASSWORD)
    r = client.post("/logout")
    if r.status_code >= 500:
        failures.append(f"{role} POST /logout -> {r.status_code}")
    return failures


def _report(failures: list[str]) -> None:
    assert not failures, f"{len(failures)} requests failed:\n" + "\n".join(failures[:200])


GROUPS = [("anonymous", "customer", "farmer", "oversight"), ("official",), ("admin",)]  # staff see most


@pytest.mark.xdist_group("demo")  # one demo village a process (make test-fast: --dist loadgroup)
@pytest.mark.parametrize("roles", [GROUPS[0], *(pytest.param(g, marks=pytest.mark.slow) for g in GROUPS[1:])])
def test_no_route_answers_5xx_to_a_sample_of_hostile_values(app, session, snapshot, roles):
    """Every route, every role, a few hostile values (three tests, so that pytest-xdist spreads
    them; ``make test-fast`` runs the first group's, the non-staff roles, each role with one
    of the three values in turn)."""
    walk = _seed_and_crawl(app, session, snapshot)
    failures: list[str] = []
    for i, role in enumerate(roles):
        values = [SAMPLE[i % len(SAMPLE)]] if FAST else SAMPLE
        failures += _sweep(app, walk, role, values, one_at_a_time=False)
    _report(walk.failures + failures)  # the crawls' failures, then the hostile requests'


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_no_route_answers_5xx_to_any_hostile_value(app, session, snapshot, role):
    walk = _seed_and_crawl(app, session, snapshot)
    _report(_sweep(app, walk, role, HOSTILE, one_at_a_time=True) + walk.failures)
