"""Migrations: one head, an empty database upgrades to it, and models and migrations agree."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import load_models
from core.config import PROJECT_ROOT, Settings
from core.db import Base


def _alembic_config():
    from alembic.config import Config

    cfg = Config(str(PROJECT_ROOT / "migrations" / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return cfg


def test_single_head():
    heads = ScriptDirectory.from_config(_alembic_config()).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"


@pytest.fixture
def empty_database_url(database_url, tmp_path):
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    url = make_url(database_url)
    name = f"migtest_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_empty_database_to_head_matches_models(empty_database_url, tmp_path):
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from core.web import EXT

    settings = Settings.from_env(
        {}, env="testing", instance_path=tmp_path, database_url=empty_database_url, secret_key="x"
    )
    app = create_app(settings)
    with app.app_context():
        upgrade()
        engine = app.extensions[EXT]["db"].engine
        load_models()
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        summary = [f"{d[0]} {getattr(d[1], 'name', '')}" if isinstance(d, tuple) else str(d) for d in diff]
        assert summary == [], "models and migrations disagree; run `flask db migrate -m ...`"
        downgrade(revision="base")
        with engine.connect() as conn:
            tables = set(engine.dialect.get_table_names(conn)) - {"alembic_version"}
        assert tables == set()
        engine.dispose()


def _fill(conn, table: str, **values):
    """Insert one row into ``table`` giving every NOT NULL column without a default a value."""
    from sqlalchemy import inspect

    for col in inspect(conn).get_columns(table):
        name, kind = col["name"], str(col["type"]).upper()
        if (
            name in values
            or col["nullable"]
            or col.get("default") is not None
            or col.get("autoincrement") is True
        ):
            continue
        if name == "id":
            continue
        values[name] = (
            0
            if any(t in kind for t in ("INT", "NUMERIC", "FLOAT", "DOUBLE", "REAL"))
            else "2026-11-01"
            if kind in ("DATE",) or "DATETIME" in kind or "TIMESTAMP" in kind
            else False
            if "BOOL" in kind
            else "{}"
            if "JSON" in kind
            else f"x{len(values)}"
        )
    names = ", ".join(values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in values)})"), values)


def test_upgrade_keeps_printed_labels_resolving(empty_database_url, tmp_path, monkeypatch):
    """Issue 14 stores a GTIN on each lot: an instance upgraded from the release before keeps
    the GTIN its labels printed (the product's own, or the one derived from the prefix and
    the product id), so a label printed before the upgrade still opens its lot."""
    from flask_migrate import upgrade

    from app import create_app
    from core.web import EXT

    monkeypatch.delenv("GS1_COMPANY_PREFIX", raising=False)  # the old default, 6970000
    settings = Settings.from_env(
        {}, env="testing", instance_path=tmp_path, database_url=empty_database_url, secret_key="x"
    )
    app = create_app(settings)
    with app.app_context():
        upgrade(revision="3b317b913794")
        engine = app.extensions[EXT]["db"].engine
        with engine.begin() as conn:
            _fill(conn, "shop_products", id=1, slug="peach", gtin=None)
            _fill(conn, "shop_products", id=2, slug="grape", gtin="6901234567892")  # staff's own
            _fill(conn, "shop_lots", id=1, lot_number="L1", code="AAAAAAAAAA", product_id=1)
            _fill(conn, "shop_lots", id=2, lot_number="L2", code="BBBBBBBBBB", product_id=2)
        upgrade()
        with engine.connect() as conn:
            gtins = dict(conn.execute(text("SELECT lot_number, gtin FROM shop_lots")).all())
        engine.dispose()
    assert gtins == {"L1": "06970000000017", "L2": "06901234567892"}
    client = app.test_client()
    assert client.get("/01/06970000000017/10/L1").status_code == 200
    assert client.get("/01/06901234567892/10/L2").status_code == 200
    assert client.get("/01/06901234567892").status_code == 307  # the product, found through its lots
