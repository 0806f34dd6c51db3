"""CLI: ``flask shop ...`` (expire reservations, record a payout, household statements, and
traceability's ``export-epcis``)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from core import parse
from core.cli import transaction

shop_cli = AppGroup("shop", help="The produce shop: reservations, payouts, statements.")


@shop_cli.command("expire")
def expire():
    """Cancel unpaid orders whose reservation has lapsed and return their stock (run from cron)."""
    from shop.checkout import expire_reservations

    with transaction() as session:
        count = expire_reservations(session)
    click.echo(f"{count} lapsed reservation(s) cancelled")


@shop_cli.command("payout")
@click.argument("payout_id")
@click.argument("amount")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Arrival date (default today).")
def payout(payout_id, amount, day):
    """Record a Stripe payout of AMOUNT yuan into the bank (when the webhook is not used)."""
    from core.money import parse_yuan
    from shop.settlement import local_day, post_payout

    arrived = day.date() if day else local_day(None)
    with transaction() as session:
        voucher = post_payout(session, payout_id, parse_yuan(amount), arrived=arrived)
        label = voucher.label if voucher else "-"
    click.echo(f"posted voucher {label}")


@shop_cli.command("statement")
@click.argument("household_code")
@click.option("--month", default=None, help="YYYY-MM (default this month).")
def statement(household_code, month):
    """Print a supplying household's monthly statement (sales, commission, owed)."""
    from sqlalchemy import select

    from coop.models import Household
    from core.money import format_fen
    from shop.settlement import household_statement, local_day

    today = local_day(None)
    try:
        year, mon = parse.month(month, default=(today.year, today.month))
    except parse.InputError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from exc
    with transaction() as session:
        household = session.scalar(select(Household).where(Household.code == household_code))
        if household is None:
            raise click.ClickException(f"no household {household_code!r}")
        data = household_statement(session, household.id, year, mon)
    click.echo(f"{household.code} {household.head_name} {year:04d}-{mon:02d}")
    for e in data["entries"]:
        click.echo(
            f"{e['at']:%Y-%m-%d} {e['order']:14} {e['name_zh']:16} {format_fen(e['gross']):>12} "
            f"{format_fen(e['commission']):>10} {format_fen(e['owed']):>12}"
        )
    click.echo(
        f"total sales {format_fen(data['gross'])}, commission {format_fen(data['commission'])}, "
        f"owed {format_fen(data['owed'])}"
    )


@shop_cli.command("settings")
@click.option("--name", "centre_name", help="The sales centre's name.")
@click.option("--address", "centre_address", help="Where customers collect their orders.")
@click.option("--hours", "centre_hours", help="Opening hours, e.g. '每天 8:00–18:00'.")
@click.option("--phone", "centre_phone", help="The phone customers call (orders, recalls).")
@click.option("--guest-orders", "guest_open_orders_max", help="Unpaid guest orders per phone, per address.")
@click.option("--guest-units", "guest_product_units_max", help="Units of one product all guests may hold.")
@click.option("--guest-fen", "guest_product_fen_max", help="Fen of one product all guests may hold.")
@click.option("--pickup-hold-hours", "pickup_hold_hours", help="Hours an unpaid pickup order is kept.")
@click.option("--confirmed-hold-days", "confirmed_hold_days", help="Days a confirmed pickup order is kept.")
def settings_command(**options):
    """Show the sales centre's details and hold rules, or change those given (audited)."""
    from shop import settings as shop_settings

    changes = {key: value for key, value in options.items() if value is not None}
    with transaction() as session:
        row = shop_settings.update(session, **changes) if changes else shop_settings.get(session)
        shown = {key: getattr(row, key) for key in (*shop_settings.FIELDS, *shop_settings.NUMBERS)}
    for key, value in shown.items():
        click.echo(f"{key.removeprefix('centre_')}: {value}")


def _add_trace_commands() -> None:
    """Traceability's commands (``shop.trace.cli``) join this group."""
    from shop.trace import cli as trace_cli

    for command in trace_cli.COMMANDS:
        if command.name not in shop_cli.commands:
            shop_cli.add_command(command)


_add_trace_commands()
