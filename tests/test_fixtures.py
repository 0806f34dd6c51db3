"""The test harness itself: service tests build no Flask app, and a wiped SQLite database
keeps enforcing foreign keys."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError


def test_the_session_fixture_builds_no_flask_app(monkeypatch, request):
    import app

    monkeypatch.setattr(app, "create_app", lambda *a, **k: pytest.fail("a service test built an app"))
    session = request.getfixturevalue("session")
    assert session.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.parametrize("attempt", [1, 2])  # the second runs after the first one's wipe
def test_foreign_keys_hold_after_a_wipe(session, attempt):
    from iot.models import Device

    session.add(Device(device_id=f"orphan-{attempt}", greenhouse_id=999_999, kind="sensor"))
    with pytest.raises(IntegrityError):
        session.flush()
