"""CLI: ``flask users ...`` and ``flask demo ...``."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from core import auth
from core.models import ROLES
from core.web import database

users_cli = AppGroup("users", help="Manage user accounts and API tokens.")
demo_cli = AppGroup("demo", help="Demo data and the all-in-one demo runner.")


def _session():
    return database().session_factory()


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", help="Prompted for (twice, hidden) when not given.")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--household", "household_id", type=int, help="Member household id (farmers).")
def create_user(username, role, password, display_name, household_id):
    """Create a user with a role."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _session() as session:
        try:
            user = auth.create_user(
                session, username, password, role, display_name=display_name, household_id=household_id
            )
        except auth.AuthError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
        click.echo(f"created user {user.username} ({user.role})")


@users_cli.command("list")
def list_users():
    """List users and their roles."""
    from sqlalchemy import select

    from core.models import User

    with _session() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            state = "" if user.active else " (disabled)"
            click.echo(f"{user.username:20} {user.role:10} {user.display_name}{state}")


@users_cli.command("token")
@click.argument("username")
@click.option("--name", default="cli", help="A label for the token.")
@click.option("--revoke", "revoke_all", is_flag=True, help="Revoke all of the user's tokens instead.")
def token(username, name, revoke_all):
    """Print a new personal API token for USERNAME (shown once), or revoke them all."""
    with _session() as session:
        user = auth.get_user(session, username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        if revoke_all:
            count = auth.revoke_tokens(session, user)
            session.commit()
            click.echo(f"revoked {count} token(s) of {user.username}")
            return
        _row, text = auth.issue_token(session, user, name)
        session.commit()
        click.echo(text)


@users_cli.command("set-password")
@click.argument("username")
@click.option("--password")
def set_password(username, password):
    """Change a user's password."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _session() as session:
        user = auth.get_user(session, username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        try:
            auth.set_password(user, password)
        except auth.AuthError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
        click.echo("password changed")


@demo_cli.command("seed")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has users.")
@click.option("--password", default=None, help="One password for every demo user (default: random, printed).")
def seed(if_empty, password):
    """Create a believable demo village: households, greenhouses, products, users."""
    from core.demo import seed_all

    with _session() as session:
        from sqlalchemy import func, select

        from core.models import User

        if if_empty and session.scalar(select(func.count(User.id))):
            click.echo("database already has data; demo seed skipped")
            return
        accounts = seed_all(session, password=password)
        session.commit()
    click.echo("Demo data created. Accounts (passwords are shown only now):")
    for username, role, pw in accounts:
        click.echo(f"  {role:9} {username:14} {pw}")


@demo_cli.command("run")
@click.option("--port", default=5000, show_default=True)
@click.option("--speedup", default=60.0, show_default=True, help="Simulated seconds per real second.")
def run_demo(port, speedup):
    """Start the broker, ingester, simulator and web app; Ctrl-C stops them all."""
    from core.supervisor import run_demo as _run

    raise SystemExit(_run(port=port, speedup=speedup))
