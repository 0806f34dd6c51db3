"""iot.quarantine: the one set of quarantine queries (CLI and admin pages share them) and replay."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from core.config import PROJECT_ROOT
from iot import quarantine
from iot.models import QuarantinedMessage


def _held(session, reason: str, detail: str | None = None, *, replayed: bool = False) -> QuarantinedMessage:
    q = QuarantinedMessage(
        received_at=datetime.fromtimestamp(time.time(), UTC),
        topic=f"farm/GH1/{detail or 'x'}/telemetry",
        payload=b"{}",
        reason=reason,
        detail=detail,
        replayed_at=datetime.now(UTC) if replayed else None,
    )
    session.add(q)
    session.flush()
    return q


def test_counts_and_newest_with_filters(session):
    a = _held(session, "unknown_device", "dev_1")
    b = _held(session, "out_of_range")
    c = _held(session, "unknown_device", "devX1")
    d = _held(session, "unknown_device", "dev_1", replayed=True)
    session.commit()
    assert quarantine.pending_count(session) == 3
    assert quarantine.counts_by_reason(session) == [("unknown_device", 2), ("out_of_range", 1)]
    assert quarantine.counts_by_reason(session, include_replayed=True)[0] == ("unknown_device", 3)
    assert [q.id for q in quarantine.newest(session)] == [c.id, b.id, a.id]
    assert [q.id for q in quarantine.newest(session, reason="unknown_device", limit=1)] == [c.id]
    assert [q.id for q in quarantine.newest(session, include_replayed=True)] == [d.id, c.id, b.id, a.id]
    # "_" in a device id is a character, not a LIKE wildcard: devX1's messages are not dev_1's
    assert quarantine.waiting_for_device(session, "dev_1") == 1
    assert quarantine.waiting_for_device(session, "devX1") == 1
    assert quarantine.waiting_for_device(session, "nobody") == 0


def test_cli_and_admin_pages_write_no_quarantine_query_of_their_own():
    for name in ("cli.py", "admin_views.py"):
        text = (PROJECT_ROOT / "iot" / name).read_text()
        assert "QuarantinedMessage" not in text and "replay_quarantine" not in text, name
