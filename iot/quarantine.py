"""Quarantined messages: what the ingester could not store, with the reason, and replay.

The queries are shared by ``flask iot quarantine`` and the admin pages (take a session,
never commit). ``replay`` feeds messages through the ingester's writer again; like the
ingester it commits batch by batch (it is the ingester's own transaction), and like the
ingester a message the database refuses is kept (``store_error``) without stopping it.

A row is one distinct (topic, payload) waiting (``seen_count`` times received, the last
at ``last_seen_at``); a payload larger than the limit was kept cut (``size`` is its
original length, ``sha256`` its hash): such rows are never replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from iot.ingest.writer import BatchResult, BatchWriter, Message
from iot.models import QuarantinedMessage as Q

# reasons that name a device (the detail starts with its id) and that a change to the
# device (registering or assigning it) can clear
DEVICE_REASONS = ("unknown_device", "unassigned_device", "greenhouse_mismatch")


def _waiting(include_replayed: bool) -> list[ColumnElement[bool]]:
    """The condition for messages still waiting (none with ``include_replayed``)."""
    return [] if include_replayed else [Q.replayed_at.is_(None)]


def pending_count(session: Session) -> int:
    """Messages waiting in quarantine (not replayed)."""
    return session.scalar(select(func.count()).select_from(Q).where(Q.replayed_at.is_(None))) or 0


def counts_by_reason(session: Session, *, include_replayed: bool = False) -> list[tuple[str, int]]:
    """(reason, messages), the most frequent first."""
    query = select(Q.reason, func.count()).where(*_waiting(include_replayed)).group_by(Q.reason)
    rows = session.execute(query).all()
    return sorted(((r, n) for r, n in rows), key=lambda rn: (-rn[1], rn[0]))


def newest(
    session: Session, *, reason: str | None = None, include_replayed: bool = False, limit: int = 50
) -> list[Q]:
    """Quarantined messages, newest first, of one ``reason`` or all."""
    query = select(Q).where(*_waiting(include_replayed)).order_by(Q.id.desc()).limit(limit)
    if reason:
        query = query.where(Q.reason == reason)
    return list(session.scalars(query))


def waiting_for_device(session: Session, device_id: str) -> int:
    """Messages held back because of the device (unknown, unassigned or in another greenhouse)."""
    query = (
        select(func.count())
        .select_from(Q)
        .where(
            Q.replayed_at.is_(None),
            Q.reason.in_(DEVICE_REASONS),
            Q.detail.startswith(device_id, autoescape=True),
        )
    )
    return session.scalar(query) or 0


def replay(
    engine: Engine,
    *,
    topic_prefix: str = "farm",
    tasmota_prefix: str = "tele",
    reason: str | None = None,
    ids: Iterable[int] | None = None,
    batch_size: int = 500,
    progress: Callable[[int, int, BatchResult], None] | None = None,
    unknown_device_policy: str = "quarantine",
    irrigation_max_s: int = 12 * 3600,
) -> BatchResult:
    """Feed quarantined messages (not yet replayed) through the writer again.

    Stored ones get ``replayed_at``; the rest keep their row with the new reason."""
    writer = BatchWriter(
        engine,
        topic_prefix=topic_prefix,
        tasmota_prefix=tasmota_prefix,
        unknown_device_policy=unknown_device_policy,
        irrigation_max_s=irrigation_max_s,
    )
    writer.registry.refresh()
    query = select(Q.id).where(Q.replayed_at.is_(None)).order_by(Q.id)
    if reason:
        query = query.where(Q.reason == reason)
    if ids is not None:
        query = query.where(Q.id.in_(list(ids)))
    with writer.session_factory() as session:
        all_ids = list(session.scalars(query))
    total = BatchResult()
    done = 0
    for start in range(0, len(all_ids), batch_size):
        chunk = all_ids[start : start + batch_size]
        with writer.session_factory() as session:
            rows = session.execute(
                select(Q.id, Q.topic, Q.payload, Q.received_at, Q.size, Q.reason, Q.detail)
                .where(Q.id.in_(chunk))
                .order_by(Q.id)
            ).all()
        messages = [
            Message(
                r.topic, bytes(r.payload), r.received_at.replace(tzinfo=UTC).timestamp(), quarantine_id=r.id
            )
            for r in rows
            if not _cut(r.size, r.payload)
        ]
        result = writer.store(messages, replay=True) if messages else BatchResult()
        for r in rows:  # only the first bytes were kept: nothing to replay, the row stays as it is
            if _cut(r.size, r.payload):
                result.still_failing[r.id] = (r.reason, r.detail or "")
                result.quarantined[r.reason] += 1
        result.notifications = []  # replayed history: its alerts are shown in the app, not published
        total.add(result)
        done += len(chunk)
        if progress:
            progress(done, len(all_ids), total)
    return total


def _cut(size: int | None, payload: bytes) -> bool:
    return size is not None and size > len(payload)
