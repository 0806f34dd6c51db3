"""Database snapshots for expensive fixtures: build once per test process, restore after.

A fixture such as the demo village or ten closed years of books costs one to seven
seconds to build and dozens of tests ask for it. On SQLite, ``Snapshots.take(key, build)``
runs ``build()`` the first time (on the empty test database the fixture would have started
from), copies the whole database into memory with SQLite's backup API, and on later calls
copies it back instead of building again: every test still starts from exactly what
``build()`` leaves, with the same ids. ORM objects in the value ``build()`` returns are
kept as (class, primary key) and loaded again into the caller's session; other values are
deep-copied. On PostgreSQL every call builds (the suite there is not the quick one).

A snapshot is keyed by the caller's key, whether passwords are hashed quickly, and what the database
held before the build (a test that made a user before asking for the fixture gets its own
snapshot, built on that state, rather than one that would overwrite its user). That
"before" is compared by content, leaving out what differs from run to run for the same
fixtures (times, password hashes, tokens).
"""

from __future__ import annotations

import copy
import hashlib
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class _Ref:
    cls: type
    identity: tuple[Any, ...]


def _is_mapped(value: Any) -> bool:
    try:
        return inspect(value, raiseerr=False) is not None and hasattr(value, "__mapper__")
    except Exception:
        return False


def _keep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _keep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_keep(v) for v in value)
    if _is_mapped(value):
        state = inspect(value)
        assert state.identity is not None, f"{value!r} was never flushed"
        return _Ref(type(value), state.identity)
    if isinstance(value, Session):
        return _SESSION
    return copy.deepcopy(value)


_SESSION = object()  # stands for the caller's session in a kept value


def _load(value: Any, session: Session) -> Any:
    if isinstance(value, dict):
        return {k: _load(v, session) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_load(v, session) for v in value)
    if isinstance(value, _Ref):
        return session.get(value.cls, value.identity)
    if value is _SESSION:
        return session
    return copy.deepcopy(value)


_BY_CONTENT = 50
_VOLATILE = ("_at", "hash", "token", "secret", "salt", "nonce", "digest")
# inside values (JSON payloads of chain and audit records): times, password hashes, digests
_VOLATILE_TEXT = re.compile(
    r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d)?|pbkdf2:[^\"',]*|scrypt:[^\"',]*|[0-9a-f]{32,}"
)


def _state(path: str) -> str:
    """What the database holds, for comparing the state a build starts from."""
    h = hashlib.sha256()
    con = sqlite3.connect(path, timeout=30)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        for table in tables:
            # small tables (users, households, settings) by content; big ones (a chart of
            # accounts, a chain) by size and last rowid: they come from the same fixtures
            cursor = con.execute(f'SELECT * FROM "{table}" LIMIT {_BY_CONTENT + 1}')
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            if not rows:
                continue
            if len(rows) > _BY_CONTENT:
                count, last = con.execute(f'SELECT count(*), max(rowid) FROM "{table}"').fetchone()
                h.update(f"{table}:{count}:{last}".encode())
                continue
            h.update(f"{table}:{len(rows)}".encode())
            keep = [i for i, n in enumerate(names) if n != "at" and not any(v in n for v in _VOLATILE)]
            for row in rows:
                h.update(_VOLATILE_TEXT.sub("~", repr([row[i] for i in keep])).encode())
    finally:
        con.close()
    return h.hexdigest()


class Snapshots:
    """Per test process: key -> (in-memory copy of the database, kept value)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], tuple[sqlite3.Connection, Any]] = {}

    def take(
        self,
        engine: Engine,
        session: Session,
        key: tuple[Any, ...],
        build: Callable[[], Any],
    ) -> Any:
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        if not path or path == ":memory:":
            value = build()
            session.commit()  # as the snapshot's build does: the fixture's rows are committed
            return value
        session.commit()  # nothing of the caller's may hold a lock the restore needs
        key = (*key, _state(path))
        if key in self._kept:
            memory, kept = self._kept[key]
            target = sqlite3.connect(path, timeout=30)
            try:
                memory.backup(target)
            finally:
                target.close()
            session.expire_all()
            return _load(kept, session)
        value = build()
        session.commit()
        memory = sqlite3.connect(":memory:")
        source = sqlite3.connect(path, timeout=30)
        try:
            source.backup(memory)
        finally:
            source.close()
        self._kept[key] = (memory, _keep(value))
        return value
