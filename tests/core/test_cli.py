"""The users CLI: create (with prompt), token, revoke."""

from __future__ import annotations

from core import auth
from tests.conftest import login


def test_users_create_prompts_for_password_and_user_can_log_in(runner, client):
    result = runner.invoke(
        args=["users", "create", "kuaiji", "--role", "official"], input="s3cret-pass\ns3cret-pass\n"
    )
    assert result.exit_code == 0, result.output
    assert "created user kuaiji (official)" in result.output
    assert login(client, "kuaiji", "s3cret-pass").status_code == 302
    assert client.get("/coop/").status_code == 200


def test_users_create_refuses_bad_input(runner):
    assert (
        runner.invoke(args=["users", "create", "x", "--role", "king", "--password", "longenough"]).exit_code
        != 0
    )
    result = runner.invoke(args=["users", "create", "bob", "--role", "customer", "--password", "short"])
    assert result.exit_code != 0 and "at least 10" in result.output
    runner.invoke(args=["users", "create", "bob", "--role", "customer", "--password", "longenough"])
    result = runner.invoke(args=["users", "create", "bob", "--role", "customer", "--password", "longenough"])
    assert result.exit_code != 0 and "already exists" in result.output


def test_users_token_prints_a_working_token_and_revoke_stops_it(runner, app, make_user):
    make_user("zhaolin", "farmer")
    result = runner.invoke(args=["users", "token", "zhaolin"])
    assert result.exit_code == 0
    token = result.output.strip()
    assert token.startswith(auth.TOKEN_PREFIX)
    client = app.test_client()
    assert client.get("/iot/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    result = runner.invoke(args=["users", "token", "zhaolin", "--revoke"])
    assert "revoked 1 token" in result.output
    assert client.get("/iot/", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert runner.invoke(args=["users", "token", "nobody"]).exit_code != 0
