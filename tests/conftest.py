"""Shared fixtures: a test database (SQLite by default, PostgreSQL with TEST_DATABASE_URL),
an app per test, a client, a session, user factories and a login helper.

Every test starts with empty tables: rows are deleted after each test, which works the
same for SQLite, PostgreSQL and live servers in other threads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text

from app import load_models
from core.config import Settings
from core.db import Base, make_engine, make_session_factory

DEFAULT_PASSWORD = "correct-horse-9"

# Property tests: a few hundred examples while developing, thousands in CI, a handful in
# `make test-fast`. HYPOTHESIS_PROFILE picks one; CI=true means "ci". Tests set only what
# else they need (deadline, health checks), so the profile decides how many examples run.
hypothesis_settings.register_profile("fast", max_examples=20, deadline=None)
hypothesis_settings.register_profile("dev", max_examples=300, deadline=None)
hypothesis_settings.register_profile("ci", max_examples=3000, deadline=None, print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)


@pytest.fixture(autouse=True)
def _default_clock():
    """Every test starts in the default zone with a running clock (apps configure it)."""
    from core import clock

    clock.configure(clock.DEFAULT_TIMEZONE)
    yield
    clock.configure(clock.DEFAULT_TIMEZONE)


@pytest.fixture(autouse=True)
def _quick_password_hashing(request, monkeypatch):
    """scrypt costs ~80 ms a user; tests make hundreds. Tests marked ``real_hashing`` keep it."""
    if request.node.get_closest_marker("real_hashing") is None:
        from werkzeug.security import generate_password_hash

        import core.auth

        monkeypatch.setattr(
            core.auth, "hash_password", lambda pw: generate_password_hash(pw, "pbkdf2:sha256:1")
        )


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def engine(database_url):
    load_models()
    eng = make_engine(database_url)
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def _wipe(engine) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            # a session a test left open would make TRUNCATE wait for ever: fail instead
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    with engine.connect() as conn:
        # SQLite ignores this pragma inside a transaction: switch it outside one, both ways,
        # or the pooled connection goes back without foreign keys
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        for table in tables:
            conn.execute(table.delete())
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        conn.commit()


@pytest.fixture
def clean_database(engine):
    """Empty tables after the test (requested first, so it runs after every other teardown)."""
    yield
    _wipe(engine)


@pytest.fixture
def settings(clean_database, engine, database_url, tmp_path) -> Settings:
    return Settings.from_env(
        {},
        env="testing",
        instance_path=tmp_path / "instance",
        database_url=database_url,
        secret_key="test-secret-key",
        mqtt_url=os.environ.get("TEST_MQTT_URL", "mqtt://127.0.0.1:1"),
    )


_TEMPLATE_CODE = None


def _reuse_url_builders() -> None:
    """Werkzeug compiles two URL-builder functions per route for every app (a quarter of the
    quick suite's time, with an app per test). The function depends only on the rule, its
    defaults and its converters' settings (the rule comes in as its first argument), so the
    tests compile each once. Older Werkzeug without this method: nothing to do."""
    from werkzeug.routing.rules import Rule

    original = getattr(Rule, "_compile_builder", None)
    if original is None or getattr(original, "reused", False):
        return
    compiled: dict[tuple, object] = {}

    def compile_builder(self, append_unknown: bool = True):
        # a converter's settings matter only for defaults it renders ahead of time
        converters = tuple((name, type(c)) for name, c in self._converters.items())
        if self.defaults:
            converters += tuple(
                (name, repr(sorted((k, repr(v)) for k, v in vars(c).items() if k != "map")))
                for name, c in self._converters.items()
            )
        key = (
            self.rule,
            tuple(self._trace),
            repr(sorted((self.defaults or {}).items())),
            append_unknown,
            converters,
        )
        if key not in compiled:
            compiled[key] = original(self, append_unknown)
        return compiled[key]

    compile_builder.reused = True  # type: ignore[attr-defined]
    Rule._compile_builder = compile_builder  # type: ignore[method-assign]


_reuse_url_builders()


def _no_stripe_retry_waits() -> None:
    """The Stripe SDK waits 0.5 s and more between its network retries: the retries still
    happen in tests (against the stub, or an address where nothing listens), without the wait."""
    try:
        from stripe._http_client import HTTPClient
    except ImportError:  # older SDK layout
        return
    if hasattr(HTTPClient, "_sleep_time_seconds"):
        HTTPClient._sleep_time_seconds = lambda self, num_retries, *args: 0.0  # type: ignore[method-assign]


_no_stripe_retry_waits()


def make_test_app(settings: Settings, **flask_config):
    """The app, with CSRF off unless asked; its templates are compiled once per test process
    (a Jinja bytecode cache shared by every test's app: same source, same code)."""
    from jinja2 import BytecodeCache

    from app import create_app

    global _TEMPLATE_CODE
    if _TEMPLATE_CODE is None:

        class _InMemory(BytecodeCache):
            def __init__(self) -> None:
                self.code: dict[str, bytes] = {}

            def load_bytecode(self, bucket) -> None:
                if bucket.key in self.code:
                    bucket.bytecode_from_string(self.code[bucket.key])

            def dump_bytecode(self, bucket) -> None:
                self.code[bucket.key] = bucket.bytecode_to_string()

        _TEMPLATE_CODE = _InMemory()
    app = create_app(settings)
    app.config.update({"WTF_CSRF_ENABLED": False, **flask_config})
    app.jinja_env.bytecode_cache = _TEMPLATE_CODE
    return app


@pytest.fixture
def app(settings):
    application = make_test_app(settings)
    yield application
    from core.web import EXT

    application.extensions[EXT]["db"].engine.dispose()


@pytest.fixture
def csrf_app(settings):
    """An app with CSRF protection on, as in production."""
    application = make_test_app(settings, WTF_CSRF_ENABLED=True)
    yield application
    from core.web import EXT

    application.extensions[EXT]["db"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def session(clean_database, engine) -> Iterator:
    """A session on the test database for services under test: no Flask app is built
    (tests that also want pages ask for ``client``; both see the same database)."""
    s = make_session_factory(engine)()
    yield s
    s.close()


@pytest.fixture(scope="session")
def _snapshot_store():
    from tests.snapshots import Snapshots

    return Snapshots()


@pytest.fixture
def snapshot(_snapshot_store, engine, session, request):
    """``snapshot("name", build)``: ``build()`` on the first call in this process, afterwards the
    database it left restored (SQLite; see tests/snapshots.py) and its value loaded again."""
    quick = request.node.get_closest_marker("real_hashing") is None

    def take(name: str, build):
        return _snapshot_store.take(engine, session, (name, quick), build)

    return take


@pytest.fixture
def make_user(session):
    """Create a user: ``make_user("alice", "farmer", household_id=...)``."""
    from core import auth

    def factory(username: str, role: str = "customer", password: str = DEFAULT_PASSWORD, **kwargs):
        user = auth.create_user(session, username, password, role, **kwargs)
        session.commit()
        return user

    return factory


def login(client, username: str, password: str = DEFAULT_PASSWORD, follow_redirects: bool = False):
    return client.post(
        "/login", data={"username": username, "password": password}, follow_redirects=follow_redirects
    )


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token in page"
    return match.group(1)
