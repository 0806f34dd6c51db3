"""core.web.attempt: commit on success; a user-facing refusal rolls back and is flashed."""

from __future__ import annotations

import pytest
from flask import get_flashed_messages
from sqlalchemy import select

from core.errors import DomainError
from core.models import User
from core.web import attempt, db_session


class Refused(DomainError):
    pass


def _add_user(name: str) -> None:
    db_session().add(User(username=name, password_hash="x", role="customer"))
    db_session().flush()


def test_attempt_commits_or_rolls_back_and_flashes(app, session):
    with app.test_request_context("/"):
        with attempt() as ok:
            _add_user("kept")
        assert ok.ok
        with attempt() as refused:
            _add_user("dropped")
            raise Refused("Wrong username or password.")
        assert not refused.ok
        assert get_flashed_messages(with_categories=True) == [("error", "用户名或密码错误。")]
        with pytest.raises(KeyError), attempt():
            raise KeyError("a bug is not swallowed")
    assert set(session.scalars(select(User.username))) == {"kept"}
