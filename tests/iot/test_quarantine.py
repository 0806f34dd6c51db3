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


def test_demo_quarantine_shows_counts_sizes_and_hashes_on_the_page_and_in_the_cli(
    client, runner, make_user, session
):
    """The demo's quarantine (written by the ingester's own ``quarantine()``): a stray sensor's
    message received three times is one row; a log dump is kept cut, with its size and hash."""
    from sqlalchemy import select

    from iot import demo
    from iot.ingest.writer import message_sha256
    from tests.conftest import login

    demo.seed_quarantine(session)
    session.commit()
    rows = list(session.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)))
    assert [(q.reason, q.seen_count, q.truncated) for q in rows] == [
        ("bad_device_id", 3, False),
        ("bad_payload", 1, True),
    ]
    dump = rows[1]
    topic, payload = demo.DUMP
    assert dump.size == len(payload) and dump.payload == payload[:4096]
    assert dump.sha256 == message_sha256(topic, payload)
    assert rows[0].last_seen_at > rows[0].received_at

    make_user("boss", "admin")
    login(client, "boss")
    html = client.get("/iot/admin/quarantine").get_data(as_text=True)
    assert "共收到 3 次，最近一次" in html  # received 3 times, last ...
    assert f"已截断：{len(payload)} 字节中只保留了前 4096 字节（无法重放）" in html  # cut, not replayable
    assert dump.sha256[:12] in html and "25 字节" in html  # the stray message, whole: 25 bytes

    out = runner.invoke(args=["iot", "quarantine", "list"]).output
    assert "seen=3" in out and f"size={len(payload)} cut_to=4096" in out
    assert f"sha256={dump.sha256[:12]}" in out
