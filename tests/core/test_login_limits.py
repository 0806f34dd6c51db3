"""Logins that cannot be brute-forced, and passwords that are not guessed first.

The throttle takes its slot before the password is checked, atomically, per account and
address, per address and per account; 40 guesses in parallel against a real threaded server
(SQLite, or PostgreSQL with TEST_DATABASE_URL) get at most the limit checked."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from core import auth
from core.config import Settings
from core.db import utcnow
from core.models import User
from core.web import EXT
from tests.conftest import DEFAULT_PASSWORD, login, make_test_app

GUESSES = 40


def login_from(client, address: str, username: str, password: str = DEFAULT_PASSWORD):
    return client.post(
        "/login",
        data={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


# -- the password rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "password,why",
    [
        ("short-pw1", "at least 10"),
        ("Zhaolin", "at least 10"),
        ("zhaolin-garden", "contain the username"),
        ("my-ZHAOLIN-99", "contain the username"),
        ("password123", "most common"),
        ("qwertyuiop", "most common"),
        ("1234567890", "most common"),
        ("Woaini1314", "most common"),
        ("x" * 201, "at most 200"),
    ],
)
def test_the_password_rule_refuses(session, password, why):
    with pytest.raises(auth.AuthError) as refused:
        auth.create_user(session, "zhaolin", password, "farmer")
    assert why in str(refused.value)
    assert session.scalars(select(User)).first() is None


def test_a_good_password_is_accepted_and_the_demo_password_still_works(session):
    auth.create_user(session, "zhaolin", "peach-orchard-7", "farmer")
    auth.create_user(session, "wangfang", "demo-pass-1", "farmer")
    assert len(session.scalars(select(User)).all()) == 2


def test_the_common_list_is_the_shipped_one():
    common = auth.common_passwords()
    assert len(common) > 19_000
    assert "123456" in common and "iloveyou" in common
    assert DEFAULT_PASSWORD not in common


def test_set_password_keeps_the_rule(session, make_user):
    user = make_user("zhaolin", "farmer")
    with pytest.raises(auth.AuthError, match="most common"):
        auth.set_password(session, session.merge(user), "password1234")


@pytest.mark.parametrize(
    "password,why",
    [("short", "at least 10"), ("kuaiji-2026-x", "username"), ("1q2w3e4r5t", "most common")],
)
def test_the_cli_keeps_the_rule(runner, make_user, password, why):
    created = runner.invoke(args=["users", "create", "kuaiji", "--role", "official", "--password", password])
    assert created.exit_code == 1 and why in created.output
    make_user("kuaiji", "official")
    changed = runner.invoke(args=["users", "set-password", "kuaiji", "--password", password])
    assert changed.exit_code == 1 and why in changed.output


# -- the throttle, one request at a time ---------------------------------------------------


def test_a_strangers_failures_do_not_lock_the_official_out_from_elsewhere(client, make_user):
    make_user("kuaiji", "official")
    for _ in range(5):
        assert login_from(client, "203.0.113.9", "kuaiji", "wrong-guess-1").status_code == 401
    assert login_from(client, "203.0.113.9", "kuaiji").status_code == 429  # locked from there
    assert login_from(client, "198.51.100.7", "kuaiji").status_code == 302  # the official's own office


def test_one_address_guessing_many_accounts_is_limited(client, make_user):
    make_user("kuaiji", "official")
    for n in range(30):
        assert login_from(client, "203.0.113.9", f"user{n}", "wrong-guess-1").status_code == 401
    assert login_from(client, "203.0.113.9", "kuaiji").status_code == 429
    assert login_from(client, "198.51.100.7", "kuaiji").status_code == 302


def test_an_ipv6_network_counts_as_one_address(client, make_user):
    make_user("kuaiji", "official")
    for n in range(5):
        assert login_from(client, f"2001:db8:1:2::{n + 1:x}", "kuaiji", "wrong-guess-1").status_code == 401
    assert login_from(client, "2001:db8:1:2:ffff::9", "kuaiji").status_code == 429
    assert login_from(client, "2001:db8:1:3::1", "kuaiji").status_code == 302
    assert auth.client_key("::ffff:203.0.113.9") == "203.0.113.9"


def test_many_addresses_guessing_one_account_meet_the_slower_account_cap(session, make_user):
    make_user("kuaiji", "official")
    limits = auth.LoginLimits(per_account=12)
    for n in range(12):
        assert auth.authenticate(
            session, "kuaiji", "bad-guess", remote_addr=f"10.9.0.{n}", limits=limits
        ).error == ("invalid")
    result = auth.authenticate(session, "kuaiji", DEFAULT_PASSWORD, remote_addr="10.9.1.1", limits=limits)
    assert result.error == "locked" and result.retry_after > timedelta(hours=23)  # a new address


def test_a_stranger_cannot_lock_an_official_out_of_an_address_they_used_before_found_by_review(
    session, make_user, runner
):
    make_user("cunzhang", "official")
    limits = auth.LoginLimits(per_account=12, per_address=6)
    office = "192.0.2.10"
    assert auth.authenticate(session, "cunzhang", DEFAULT_PASSWORD, remote_addr=office, limits=limits).user
    session.commit()
    # 19 addresses × 5 guesses fill the daily cap; guesses from the office's own address fill it too
    for n in range(19):
        for _ in range(5):
            auth.authenticate(session, "cunzhang", "bad-guess", remote_addr=f"10.8.0.{n}", limits=limits)
    for _ in range(4):
        auth.authenticate(session, "cunzhang", "bad-guess", remote_addr=office, limits=limits)
    session.commit()
    assert auth.authenticate(session, "cunzhang", DEFAULT_PASSWORD, remote_addr=office, limits=limits).user
    # from a new address the cap holds, until an administrator clears it
    assert auth.authenticate(
        session, "cunzhang", DEFAULT_PASSWORD, remote_addr="10.7.0.1", limits=limits
    ).error == ("locked")
    session.commit()
    r = runner.invoke(args=["users", "unlock", "cunzhang"])
    assert r.exit_code == 0 and "cleared" in r.output, r.output
    session.expire_all()
    assert auth.authenticate(
        session, "cunzhang", DEFAULT_PASSWORD, remote_addr="10.7.0.1", limits=limits
    ).user


def test_a_refused_new_password_costs_no_login_attempt_found_by_review(client, make_user):
    make_user("wangfang", "farmer")
    login(client, "wangfang")
    for _ in range(6):
        r = client.post(
            "/account?lang=en",
            data={"current": DEFAULT_PASSWORD, "new": "short", "confirm": "short"},
        )
        assert r.status_code == 400 and "at least 10 characters" in r.get_data(as_text=True)
    ok = client.post(
        "/account", data={"current": DEFAULT_PASSWORD, "new": "grain-mill-2027", "confirm": "grain-mill-2027"}
    )
    assert ok.status_code == 302


def test_the_window_passes(session, make_user):
    make_user("kuaiji", "official")
    earlier = utcnow() - timedelta(minutes=16)
    for _ in range(5):
        auth.authenticate(session, "kuaiji", "bad-guess", remote_addr="203.0.113.9", now=earlier)
    assert auth.authenticate(session, "kuaiji", DEFAULT_PASSWORD, remote_addr="203.0.113.9").user is not None


def test_a_locked_login_says_how_long_in_the_users_language(client, make_user):
    make_user("kuaiji", "official")
    for _ in range(5):
        login(client, "kuaiji", "wrong-guess-1")
    r = client.post("/login?lang=en", data={"username": "kuaiji", "password": DEFAULT_PASSWORD})
    assert r.status_code == 429 and "Try again in 15 minutes" in r.get_data(as_text=True)


def test_bad_api_tokens_are_limited_per_address(app, make_user, session):
    user = make_user("alice", "farmer")
    _row, token = auth.issue_token(session, session.merge(user), "phone")
    session.commit()
    api = app.test_client()

    def call(tok: str, address: str):
        return api.get(
            "/api/v1/greenhouses",
            headers={"Authorization": f"Bearer {tok}"},
            environ_base={"REMOTE_ADDR": address},
        )

    for n in range(30):
        assert call(f"ty_guess{n}", "203.0.113.9").status_code == 401
    locked = call("ty_guess-more", "203.0.113.9")  # the next wrong token is not even looked at
    assert locked.status_code == 429 and "分钟" in locked.get_json()["error"]["message"]
    # the right token still works from there (found by review: junk must not lock it out)
    assert call(token, "203.0.113.9").status_code == 200
    assert call(token, "198.51.100.7").status_code == 200


# -- the throttle under 40 parallel guesses --------------------------------------------------


@pytest.mark.real_hashing
def test_forty_parallel_guesses_get_five_passwords_checked_and_the_right_one_is_refused_after(app, make_user):
    make_user("kuaiji", "official")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    start = threading.Barrier(GUESSES)

    def guess(n: int) -> int:
        with requests.Session() as browser:
            start.wait()
            r = browser.post(
                f"{base}/login",
                data={"username": "kuaiji", "password": f"wrong-guess-{n}"},
                allow_redirects=False,
                timeout=120,
            )
            return r.status_code

    try:
        with ThreadPoolExecutor(GUESSES) as pool:
            statuses = list(pool.map(guess, range(GUESSES)))
        # the right password, last, is refused while the limit holds
        with requests.Session() as browser:
            last = browser.post(
                f"{base}/login",
                data={"username": "kuaiji", "password": DEFAULT_PASSWORD},
                allow_redirects=False,
                timeout=60,
            )
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert statuses.count(401) == 5, statuses  # five passwords checked, no more
    assert statuses.count(429) == GUESSES - 5, statuses
    assert last.status_code == 429
    # the official, from their own address, is not locked out by all this
    assert login_from(app.test_client(), "198.51.100.7", "kuaiji").status_code == 302


def test_forty_parallel_wrong_tokens_get_thirty_tried_and_the_right_one_is_refused_after(
    app, make_user, session
):
    user = make_user("alice", "farmer")
    _row, token = auth.issue_token(session, session.merge(user), "phone")
    session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    start = threading.Barrier(GUESSES)

    def call(tok: str, wait: bool = True) -> int:
        if wait:
            start.wait()
        r = requests.get(
            f"{base}/api/v1/greenhouses", headers={"Authorization": f"Bearer {tok}"}, timeout=120
        )
        return r.status_code

    try:
        with ThreadPoolExecutor(GUESSES) as pool:
            statuses = list(pool.map(call, [f"ty_guess-{n}" for n in range(GUESSES)]))
        last = call(token, wait=False)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert statuses.count(401) == 30 and statuses.count(429) == GUESSES - 30, statuses
    assert last == 200  # a valid token is never refused because of the junk (found by review)


def _through_proxy(browser, password: str, forwarded: str):
    return browser.post(
        "/login",
        data={"username": "kuaiji", "password": password},
        headers={"X-Forwarded-For": forwarded},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},  # every request comes from the proxy
    )


@pytest.mark.parametrize("proxies,official", [(1, 302), (0, 429)])
def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(settings, make_user, proxies, official):
    assert Settings.from_env({"TRUSTED_PROXIES": "1"}, secret_key="x").trusted_proxies == 1
    make_user("kuaiji", "official")
    app = make_test_app(replace(settings, trusted_proxies=proxies))
    try:
        browser = app.test_client()
        for _ in range(5):
            assert _through_proxy(browser, "wrong-guess-1", "203.0.113.9").status_code == 401
        # the official's own address as the proxy reports it; without a trusted proxy the header
        # is ignored and everyone shares the proxy's address (so the stranger's failures count)
        assert _through_proxy(browser, DEFAULT_PASSWORD, "198.51.100.7").status_code == official
    finally:
        app.extensions[EXT]["db"].engine.dispose()


@pytest.mark.parametrize(
    "password",
    [
        " " * 10,
        "\t" * 10,
        "\u3000" * 10,
        "１２３４５６７８９０",
        "aaaaaaaaaaa",
        "Password!!",
        "P@ssw0rd123",
        "Admin12345",
        "tianyuan123",
        "abababababab",
    ],
)
def test_blank_repetitive_and_dressed_up_common_passwords_are_refused_found_by_review(
    password, runner, make_user
):
    with pytest.raises(auth.AuthError):
        auth.check_password_rule(password, "kuaiji")
    make_user("licai", "oversight")
    r = runner.invoke(args=["users", "set-password", "licai", "--password", password])
    assert r.exit_code == 1, r.output


@pytest.mark.parametrize(
    "password", ["grain-mill-2027", "桃园春风吹又生了吧啊", "correct-horse-9", "demo-pass-1"]
)
def test_real_passwords_still_pass(password):
    auth.check_password_rule(password, "kuaiji")
