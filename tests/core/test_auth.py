"""Users, roles, login, throttling, CSRF and API tokens, as a user meets them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import auth
from core.db import utcnow
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from, login


def test_login_with_right_password_shows_name_and_area(client, make_user):
    make_user("zhaolin", "farmer", display_name="赵林")
    response = login(client, "zhaolin", follow_redirects=True)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "赵林" in html
    assert 'data-nav="iot"' in html
    assert 'data-nav="coop"' not in html


def test_wrong_password_rerenders_form_with_message(client, make_user):
    make_user("kuaiji", "official")
    response = login(client, "kuaiji", "not-the-password")
    assert response.status_code == 401
    html = response.get_data(as_text=True)
    assert "用户名或密码错误" in html  # zh_CN is the default language
    assert 'name="username"' in html
    # and the user is still anonymous
    assert client.get("/coop/").status_code == 302


def test_wrong_password_message_in_english(client, make_user):
    make_user("kuaiji", "official")
    response = client.post("/login?lang=en", data={"username": "kuaiji", "password": "nope-nope"})
    assert "Wrong username or password." in response.get_data(as_text=True)


def test_login_is_throttled_after_repeated_failures(client, make_user):
    make_user("target", "official")
    for _ in range(5):
        assert login(client, "target", "wrong-password").status_code == 401
    # even the right password is refused while locked
    response = login(client, "target")
    assert response.status_code == 429
    assert "分钟" in response.get_data(as_text=True)
    assert client.get("/coop/").status_code == 302


def test_lockout_expires(session, make_user):
    make_user("target", "official")
    now = utcnow()
    for _ in range(5):
        auth.authenticate(session, "target", "bad", now=now - timedelta(minutes=20))
    session.commit()
    result = auth.authenticate(session, "target", DEFAULT_PASSWORD, now=now)
    assert result.user is not None and result.user.username == "target"


def test_successful_login_clears_failures(session, make_user):
    make_user("target", "official")
    for _ in range(4):
        auth.authenticate(session, "target", "bad")
    assert auth.authenticate(session, "target", DEFAULT_PASSWORD).user is not None
    for _ in range(4):
        auth.authenticate(session, "target", "bad")
    assert auth.authenticate(session, "target", DEFAULT_PASSWORD).user is not None


@pytest.mark.real_hashing
def test_passwords_are_hashed_with_scrypt(make_user):
    user = make_user("someone", "customer")
    assert user.password_hash.startswith("scrypt:")
    assert DEFAULT_PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    "role,path,status",
    [
        ("customer", "/coop/", 403),
        ("farmer", "/coop/", 403),
        ("customer", "/iot/", 403),
        ("official", "/coop/", 200),
        ("admin", "/coop/", 200),
        ("farmer", "/iot/", 200),
        ("customer", "/shop/orders", 200),
    ],
)
def test_roles_reach_only_their_pages(client, make_user, role, path, status):
    make_user("u1", role)
    login(client, "u1")
    response = client.get(path)
    assert response.status_code == status
    if status == 403:
        assert "没有权限" in response.get_data(as_text=True) or "无权" in response.get_data(as_text=True)


def test_anonymous_is_sent_to_login(client):
    response = client.get("/coop/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_form_without_csrf_token_is_rejected(csrf_app, make_user):
    make_user("kuaiji", "official")
    client = csrf_app.test_client()
    response = client.post("/login", data={"username": "kuaiji", "password": DEFAULT_PASSWORD})
    assert response.status_code == 400
    assert "安全" in response.get_data(as_text=True)
    assert client.get("/coop/").status_code == 302


def test_login_form_with_csrf_token_works(csrf_app, make_user):
    make_user("kuaiji", "official")
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"username": "kuaiji", "password": DEFAULT_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    assert client.get("/coop/").status_code == 200


def test_logout_requires_post_with_csrf(csrf_app, make_user):
    make_user("kuaiji", "official")
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": "kuaiji", "password": DEFAULT_PASSWORD, "csrf_token": token})
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/coop/").status_code == 200
    page = client.get("/coop/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token_from(page)})
    assert client.get("/coop/").status_code == 302


def test_api_token_authenticates_and_can_be_revoked(app, session, make_user):
    user = make_user("zhaolin", "farmer")
    _row, token = auth.issue_token(session, session.merge(user), "phone")
    session.commit()
    client = app.test_client()
    assert client.get("/iot/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/iot/", headers={"Authorization": "Bearer ty_wrong"}).status_code == 401
    assert auth.revoke_tokens(session, session.merge(user)) == 1
    session.commit()
    assert client.get("/iot/", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tokens_are_stored_hashed(session, make_user):
    user = session.merge(make_user("zhaolin", "farmer"))
    row, token = auth.issue_token(session, user)
    assert token not in row.token_hash and len(row.token_hash) == 64


def test_tokens_page_creates_token_once(client, make_user):
    make_user("zhaolin", "farmer")
    login(client, "zhaolin")
    html = client.post("/account/tokens", data={"name": "phone"}).get_data(as_text=True)
    token = html.split('<code class="token">')[1].split("<")[0]
    assert token.startswith("ty_")
    assert token not in client.get("/account/tokens").get_data(as_text=True)


def test_cannot_create_duplicate_or_bad_users(session, make_user):
    make_user("zhaolin", "farmer")
    with pytest.raises(auth.AuthError):
        auth.create_user(session, "ZhaoLin", "long-enough-pw", "farmer")
    with pytest.raises(auth.AuthError):
        auth.create_user(session, "x y", "long-enough-pw", "farmer")
    with pytest.raises(auth.AuthError):
        auth.create_user(session, "newuser", "short", "farmer")
    with pytest.raises(auth.AuthError):
        auth.create_user(session, "newuser", "long-enough-pw", "king")


def test_open_redirect_is_refused(client, make_user):
    make_user("kuaiji", "official")
    response = client.post(
        "/login?next=https://evil.example/", data={"username": "kuaiji", "password": DEFAULT_PASSWORD}
    )
    assert response.headers["Location"] == "/"
