"""SQLAlchemy 2 foundation: the declarative ``Base``, engines and session factories.

No Flask here: the ingester, CLI scripts and benchmarks use this module directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import DateTime, MetaData, create_engine, event, inspect
from sqlalchemy.engine import Connection, CursorResult, Dialect, Engine, Result
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core import clock
from core.errors import N_, DomainError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and always returned timezone-aware (UTC).

    SQLite has no time zones; PostgreSQL's ``timestamp without time zone`` behaves the
    same way, so the two back ends agree.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; attach a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def rows_affected(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (the conditional UPDATEs that guard states)."""
    return cast(CursorResult[Any], result).rowcount


def utcnow() -> datetime:
    """Now, aware UTC: ``core.clock.now()`` (so a frozen test clock applies to column defaults)."""
    return clock.now()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_savepoint_in_a_transaction(conn: Connection, _name: str) -> None:
    """pysqlite opens a transaction only before INSERT/UPDATE/DELETE, so a SAVEPOINT that
    comes first opens one of its own, and its RELEASE then commits for real: a savepoint
    taken after only reading (``session.begin_nested()``) would commit its rows even if the
    caller later rolled back. Begin the transaction first, so a savepoint always nests."""
    raw = conn.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and savepoints that
    stay inside their transaction."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "savepoint", _sqlite_savepoint_in_a_transaction)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class TextTooLong(DomainError):
    """A text is longer than its column allows (PostgreSQL would refuse it; SQLite would keep it)."""


def _refuse_text_too_long(session: Session, _context: Any, _instances: Any) -> None:
    """Before any flush: no text of a new or changed row is longer than its ``String(n)`` column.

    PostgreSQL refuses such a row with a DataError (a 500 where a form forgot a limit), SQLite
    stores it whole; both now get the same clear refusal, on every path (form, API, CLI,
    worker). Only values already in the row's state are read: nothing is loaded.
    """
    for obj in (*session.new, *session.dirty):
        state = inspect(obj)
        values = state.dict
        for attr in state.mapper.column_attrs:
            value = values.get(attr.key)
            if not isinstance(value, str):
                continue
            limit = getattr(attr.columns[0].type, "length", None)
            if limit and len(value) > limit:
                raise TextTooLong(
                    N_("%(field)s is too long: at most %(max)s characters"), field=attr.key, max=limit
                )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    event.listen(factory, "before_flush", _refuse_text_too_long)
    return factory
