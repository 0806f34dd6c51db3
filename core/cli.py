"""CLI: ``flask users ...``, and ``transaction()``: the one way a command ends its transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import auth
from core.errors import DomainError
from core.models import ROLES, User
from core.web import database

users_cli = AppGroup("users", help="Manage user accounts and API tokens.")


@contextmanager
def transaction() -> Iterator[Session]:
    """The one way a CLI command ends its transaction (the CLI's ``core.web.attempt``).

    The block's session is committed when it ends and rolled back on any error; a
    ``DomainError`` becomes a clean ``Error: <why>`` and exit status 1, nothing written.
    """
    session = database().session_factory()
    try:
        yield session
        session.commit()
    except DomainError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    except IntegrityError as exc:  # e.g. an id that names nothing: say so, without a traceback
        session.rollback()
        raise click.ClickException(f"refused by the database: {exc.orig}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _user(session: Session, username: str) -> User:
    user = auth.get_user(session, username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    return user


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", help="Prompted for (twice, hidden) when not given.")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--household", "household_id", type=int, help="Member household id (farmers).")
def create_user(
    username: str, role: str, password: str | None, display_name: str, household_id: int | None
) -> None:
    """Create a user with a role."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with transaction() as session:
        user = auth.create_user(
            session, username, password, role, display_name=display_name, household_id=household_id
        )
    click.echo(f"created user {user.username} ({user.role})")


@users_cli.command("list")
def list_users() -> None:
    """List users and their roles."""
    with transaction() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            state = "" if user.active else " (disabled)"
            click.echo(f"{user.username:20} {user.role:10} {user.display_name}{state}")


@users_cli.command("token")
@click.argument("username")
@click.option("--name", default="cli", help="A label for the token.")
@click.option("--revoke", "revoke_all", is_flag=True, help="Revoke all of the user's tokens instead.")
def token(username: str, name: str, revoke_all: bool) -> None:
    """Print a new personal API token for USERNAME (shown once), or revoke them all."""
    with transaction() as session:
        user = _user(session, username)
        if revoke_all:
            count = auth.revoke_tokens(session, user)
        else:
            _row, text = auth.issue_token(session, user, name)
    click.echo(f"revoked {count} token(s) of {user.username}" if revoke_all else text)


@users_cli.command("set-password")
@click.argument("username")
@click.option("--password")
def set_password(username: str, password: str | None) -> None:
    """Change a user's password (an admin's reset): every session ends, tokens are revoked."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with transaction() as session:
        auth.set_password(session, _user(session, username), password)
    click.echo("password changed; every session of the user has ended and their API tokens are revoked")


@users_cli.command("deactivate")
@click.argument("username")
def deactivate(username: str) -> None:
    """Disable a user: their sessions end at the next request, their API tokens are revoked."""
    with transaction() as session:
        auth.deactivate_user(session, _user(session, username))
    click.echo(f"deactivated {username}")


@users_cli.command("activate")
@click.argument("username")
def activate(username: str) -> None:
    """Enable a deactivated user again (they log in anew)."""
    with transaction() as session:
        auth.activate_user(_user(session, username))
    click.echo(f"activated {username}")


@users_cli.command("logout")
@click.argument("username")
def logout_everywhere(username: str) -> None:
    """End every session of a user (and revoke their API tokens), e.g. for a lost phone."""
    with transaction() as session:
        auth.end_other_sessions(session, _user(session, username))
    click.echo(f"every session of {username} has ended")


@users_cli.command("unlock")
@click.argument("username")
def unlock(username: str) -> None:
    """Clear a user's login counters (every address, and the daily cap) after a lock-out."""
    with transaction() as session:
        user = _user(session, username)
        cleared = auth.unlock_account(session, user.username)
    click.echo(f"{username}: {cleared} login counter(s) cleared")
