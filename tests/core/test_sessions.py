"""Sessions that end: a fresh session on login, an emptied one on logout, and every other
session of a user ended by a password change, an admin's reset, deactivation or "log out
everywhere" — tried with a copy of the old cookie, as the hostile tester did."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core import auth
from core.models import User, WebSession
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from, login

NEW_PASSWORD = "plum-blossom-2027"


def cookie(client) -> str:
    found = client.get_cookie("session")
    assert found is not None, "no session cookie"
    return found.value


def with_cookie(app, value: str):
    """A second browser holding a copy of a session cookie."""
    other = app.test_client()
    other.set_cookie("session", value)
    return other


def opens_tokens(client) -> bool:
    return client.get("/account/tokens").status_code == 200


def test_login_issues_a_new_session_and_the_cookie_from_before_opens_nothing(app, client, make_user):
    make_user("kuaiji", "official")
    client.get("/lang/en")
    before = cookie(client)
    login(client, "kuaiji")
    after = cookie(client)
    assert after != before
    assert opens_tokens(client)
    # the anonymous cookie from before the login is not logged in, now or ever
    assert not opens_tokens(with_cookie(app, before))
    # the language chosen before logging in survives it
    assert "Log out" in client.get("/").get_data(as_text=True)


def test_logout_ends_the_session_on_the_server(app, client, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    kept = cookie(client)
    client.post("/logout")
    assert not opens_tokens(client)
    # a copy of the cookie taken before logging out is dead too (the cookie is signed, not trusted)
    replay = with_cookie(app, kept)
    assert replay.get("/account/tokens").status_code == 302
    assert "/login" in replay.get("/account/tokens").headers["Location"]


def test_logout_keeps_the_language(client, make_user):
    make_user("kuaiji", "official")
    client.get("/lang/en")
    login(client, "kuaiji")
    client.post("/logout")
    assert "Log in" in client.get("/").get_data(as_text=True)


def test_a_cookie_from_before_server_side_sessions_is_not_logged_in(app, make_user):
    user = make_user("kuaiji", "official")
    forged = app.test_client()
    with forged.session_transaction() as s:  # a validly signed cookie without a server-side session
        s["_user_id"] = str(user.id)
        s["_fresh"] = True
    assert not opens_tokens(forged)


def test_changing_the_password_ends_every_other_session_but_this_one(app, client, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    phone = app.test_client()
    login(phone, "kuaiji")
    phone_cookie = cookie(phone)
    r = client.post(
        "/account?lang=en",
        data={"current": DEFAULT_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        follow_redirects=True,
    )
    assert "Password changed" in r.get_data(as_text=True)
    assert opens_tokens(client)  # the browser that changed it stays logged in
    assert not opens_tokens(phone)
    assert not opens_tokens(with_cookie(app, phone_cookie))
    # the new password works, the old one does not
    assert login(app.test_client(), "kuaiji", DEFAULT_PASSWORD).status_code == 401
    assert login(app.test_client(), "kuaiji", NEW_PASSWORD).status_code == 302


def test_the_password_change_form_refuses_with_reasons(client, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    wrong = client.post(
        "/account?lang=en", data={"current": "not-my-password", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert wrong.status_code == 400 and "current password is wrong" in wrong.get_data(as_text=True)
    differ = client.post(
        "/account?lang=en",
        data={"current": DEFAULT_PASSWORD, "new": NEW_PASSWORD, "confirm": "other-thing-99"},
    )
    assert differ.status_code == 400 and "differ" in differ.get_data(as_text=True)
    weak = client.post(
        "/account", data={"current": DEFAULT_PASSWORD, "new": "password123", "confirm": "password123"}
    )
    assert weak.status_code == 400 and "常见" in weak.get_data(as_text=True)
    # nothing was changed: the old password still works
    assert login(client, "kuaiji").status_code == 302


def test_guessing_the_current_password_on_the_account_page_is_throttled(client, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    for n in range(5):
        r = client.post(
            "/account", data={"current": f"guess-{n}-xyz", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        )
        assert r.status_code == 400
    r = client.post(
        "/account", data={"current": DEFAULT_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert r.status_code == 429 and "分钟" in r.get_data(as_text=True)
    # nothing changed, and logging in from the same address is locked as well (same counter)
    elsewhere = {"REMOTE_ADDR": "198.51.100.7"}
    other = client.application.test_client()
    assert (
        other.post(
            "/login", data={"username": "kuaiji", "password": NEW_PASSWORD}, environ_base=elsewhere
        ).status_code
        == 401
    )
    assert login(client.application.test_client(), "kuaiji").status_code == 429


def test_log_out_everywhere_ends_the_other_sessions(app, client, make_user):
    make_user("zhaolin", "farmer")
    login(client, "zhaolin")
    kiosk = app.test_client()
    login(kiosk, "zhaolin")
    kiosk_cookie = cookie(kiosk)
    page = client.get("/account").get_data(as_text=True)
    assert 'data-action="logout-everywhere"' in page
    client.post("/account/logout-everywhere")
    assert opens_tokens(client)
    assert not opens_tokens(kiosk)
    assert not opens_tokens(with_cookie(app, kiosk_cookie))


def test_log_out_everywhere_needs_the_csrf_token(csrf_app, make_user):
    make_user("zhaolin", "farmer")
    browser = csrf_app.test_client()
    token = csrf_token_from(browser.get("/login").get_data(as_text=True))
    browser.post("/login", data={"username": "zhaolin", "password": DEFAULT_PASSWORD, "csrf_token": token})
    assert browser.post("/account/logout-everywhere").status_code == 400
    token = csrf_token_from(browser.get("/account").get_data(as_text=True))
    assert browser.post("/account/logout-everywhere", data={"csrf_token": token}).status_code == 302


def admin_and_victim(app, client, make_user):
    make_user("admin", "admin")
    victim = make_user("zhaolin", "farmer")
    login(client, "admin")
    theirs = app.test_client()
    login(theirs, "zhaolin")
    assert opens_tokens(theirs)
    return victim, theirs, cookie(theirs)


def test_deactivation_by_the_admin_ends_the_users_sessions_and_tokens(app, client, make_user, session):
    victim, theirs, old = admin_and_victim(app, client, make_user)
    _row, token = auth.issue_token(session, session.merge(victim), "phone")
    session.commit()
    assert (
        app.test_client().get("/api/v1/greenhouses", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    assert 'data-user="zhaolin"' in client.get("/admin/users").get_data(as_text=True)
    r = client.post(f"/admin/users/{victim.id}/deactivate?lang=en", follow_redirects=True)
    assert "was deactivated" in r.get_data(as_text=True)
    assert not opens_tokens(theirs)
    assert not opens_tokens(with_cookie(app, old))
    assert (
        app.test_client().get("/api/v1/greenhouses", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    assert login(app.test_client(), "zhaolin").status_code == 401
    # activated again, the user logs in anew (the old cookie stays dead)
    client.post(f"/admin/users/{victim.id}/activate")
    assert login(app.test_client(), "zhaolin").status_code == 302
    assert not opens_tokens(with_cookie(app, old))


def test_an_admin_password_reset_ends_the_users_sessions(app, client, make_user):
    victim, theirs, old = admin_and_victim(app, client, make_user)
    r = client.post(
        f"/admin/users/{victim.id}/password?lang=en", data={"new": NEW_PASSWORD}, follow_redirects=True
    )
    assert "was reset" in r.get_data(as_text=True)
    assert opens_tokens(client)  # the admin's own session is untouched
    assert not opens_tokens(theirs)
    assert not opens_tokens(with_cookie(app, old))
    assert login(app.test_client(), "zhaolin", NEW_PASSWORD).status_code == 302


def test_an_admin_reset_keeps_the_password_rule(app, client, make_user):
    victim, theirs, _old = admin_and_victim(app, client, make_user)
    r = client.post(
        f"/admin/users/{victim.id}/password?lang=en", data={"new": "Zhaolin-2026"}, follow_redirects=True
    )
    assert "must not be or contain the username" in r.get_data(as_text=True)
    assert opens_tokens(theirs)  # refused: nothing happened


def test_the_admin_ends_a_users_sessions(app, client, make_user):
    victim, theirs, old = admin_and_victim(app, client, make_user)
    client.post(f"/admin/users/{victim.id}/logout")
    assert not opens_tokens(theirs)
    assert login(app.test_client(), "zhaolin").status_code == 302


def test_the_admin_cannot_deactivate_themself(client, make_user, session):
    admin = make_user("admin", "admin")
    login(client, "admin")
    client.post(f"/admin/users/{admin.id}/deactivate")
    assert opens_tokens(client)
    assert session.get(User, admin.id).active


@pytest.mark.parametrize("role", ["official", "farmer", "customer", "oversight"])
def test_only_the_admin_manages_users(client, make_user, role):
    other = make_user("someone", "customer")
    make_user("kuaiji", role)
    login(client, "kuaiji")
    assert client.get("/admin/users").status_code == 403
    assert client.post(f"/admin/users/{other.id}/deactivate").status_code == 403
    assert client.post(f"/admin/users/{other.id}/password", data={"new": NEW_PASSWORD}).status_code == 403


def test_unknown_user_ids_are_not_found(client, make_user):
    make_user("admin", "admin")
    login(client, "admin")
    assert client.post("/admin/users/999999/deactivate").status_code == 404
    assert client.post(f"/admin/users/{2**70}/logout").status_code == 404


@pytest.mark.parametrize(
    "args",
    [
        ["users", "set-password", "zhaolin", "--password", NEW_PASSWORD],
        ["users", "deactivate", "zhaolin"],
        ["users", "logout", "zhaolin"],
    ],
)
def test_the_cli_ends_sessions_too(app, runner, make_user, args):
    make_user("zhaolin", "farmer")
    theirs = app.test_client()
    login(theirs, "zhaolin")
    old = cookie(theirs)
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert not opens_tokens(theirs)
    assert not opens_tokens(with_cookie(app, old))


def test_a_password_change_revokes_api_tokens(app, client, make_user, session):
    user = make_user("zhaolin", "farmer")
    _row, token = auth.issue_token(session, session.merge(user), "phone")
    session.commit()
    api = app.test_client()
    assert api.get("/api/v1/greenhouses", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    login(client, "zhaolin")
    client.post("/account", data={"current": DEFAULT_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert api.get("/api/v1/greenhouses", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "revoked" in client.get("/account/tokens?lang=en").get_data(as_text=True)


def test_sessions_older_than_their_lifetime_end(app, client, make_user, session):
    from datetime import timedelta

    from core.db import utcnow

    make_user("kuaiji", "official")
    login(client, "kuaiji")
    assert opens_tokens(client)
    row = session.scalars(select(WebSession)).one()
    row.created_at = utcnow() - auth.SESSION_LIFETIME - timedelta(minutes=1)
    session.commit()
    assert not opens_tokens(client)


def test_a_login_replaces_the_row_of_the_session_before_it(client, make_user, session):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    login(client, "kuaiji")
    client.post("/logout")
    login(client, "kuaiji")
    assert len(session.scalars(select(WebSession)).all()) == 1


@pytest.mark.slow
def test_the_demo_village_passwords_pass_the_rule_and_the_admin_manages_its_users(runner, app):
    result = runner.invoke(args=["demo", "seed", "--password", "demo-pass-1"])
    assert result.exit_code == 0, result.output
    admin = app.test_client()
    assert login(admin, "admin", "demo-pass-1").status_code == 302
    listing = admin.get("/admin/users").get_data(as_text=True)
    for username in ("kuaiji", "zhaolin", "customer"):
        assert f'data-user="{username}"' in listing
    farmer = app.test_client()
    assert login(farmer, "zhaolin", "demo-pass-1").status_code == 302
    assert "修改密码" in farmer.get("/account").get_data(as_text=True)
