"""CLI for traceability: ``flask shop export-epcis LOT [--output FILE]``, ``flask shop certificate
issue LOT`` / ``list`` (承诺达标合格证), ``flask shop producer`` (the producer's identity) and
``flask shop gtin list|set|remove`` (GTINs per product and net content, ``shop.trace.gtins``).

``shop.cli`` adds ``COMMANDS`` to the ``flask shop`` group. Sales come from the shop
through the ``ShopPort`` wired in when the app registered the trace blueprint.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from core.cli import transaction
from core.errors import DomainError
from core.web import database, settings
from shop.trace import compliance, epcis, gtins, labels, producer
from shop.trace.lots import lot_by_code, lot_by_number
from shop.trace.ports import port_of


@click.command("export-epcis")
@click.argument("lot")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the document to FILE instead of standard output.",
)
@with_appcontext
def export_epcis(lot: str, output: str | None) -> None:
    """Write LOT's events (lot number or trace code) as an EPCIS 2.0 JSON-LD document."""
    cfg = settings()
    shop = port_of(current_app)
    with database().session_factory() as session:
        found = lot_by_number(session, lot) or lot_by_code(session, lot)
        if found is None:
            raise click.ClickException(f"no lot {lot!r}")
        document = epcis.export_lot(
            session,
            found,
            cfg.public_base_url,
            cfg.gs1_company_prefix,
            sales_of=shop.sales_of,
            gln=cfg.gs1_gln,
        )
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(
            f"wrote {len(document['epcisBody']['eventList'])} events of lot {found.lot_number} to {output}"
        )
    else:
        click.echo(text)


COMMANDS = [export_epcis]


# --- 承诺达标合格证 and the producer's identity -------------------------------------------


def _refusal(exc: DomainError) -> click.ClickException:
    """A refusal as the user reads it (Chinese, the default language), never a traceback."""
    from flask_babel import force_locale, gettext

    try:
        with force_locale(current_app.config.get("BABEL_DEFAULT_LOCALE", "zh_CN")):
            return click.ClickException(exc.translated(gettext))
    except Exception:  # pragma: no cover - no Babel in this app: the English text
        return click.ClickException(str(exc))


@contextmanager
def _transaction():
    with database().session_factory() as session:
        try:
            yield session
            session.commit()
        except DomainError as exc:
            session.rollback()
            raise _refusal(exc) from exc


@click.group("certificate")
def certificate_cli() -> None:
    """承诺达标合格证: issue one for a lot, list the register."""


@certificate_cli.command("issue")
@click.argument("lot")
@click.option("--quantity", "-q", help="Quantity or weight (default: all the lot still holds).")
@click.option("--unit", help="The quantity's unit (default: the lot's; kg and jin convert).")
@click.option(
    "--basis",
    type=click.Choice(compliance.BASIS_LABELS),
    help="委托检测 commissioned_test, 自我检测 self_test, 内部质量控制 internal_control, "
    "自我承诺 self_commitment (default: the first the lot's inspections support).",
)
@click.option("--user", "username", help="Who issues (an official, or a farmer of the lot's household).")
@with_appcontext
def issue_certificate(
    lot: str, quantity: str | None, unit: str | None, basis: str | None, username: str | None
):
    """Issue a certificate for LOT (lot number or trace code); prints its serial and page URL."""
    from core import auth

    cfg = settings()
    with _transaction() as session:
        found = lot_by_number(session, lot) or lot_by_code(session, lot)
        if found is None:
            raise click.ClickException(f"no lot {lot!r}")
        user_id = None
        if username:
            user = auth.get_user(session, username)
            if user is None:
                raise click.ClickException(f"no user {username!r}")
            user_id = user.id
        cert = compliance.issue_certificate(
            session,
            found,
            quantity=quantity,
            unit=unit,
            basis=basis,
            user_id=user_id,
            trace_url=compliance.trace_url(found, cfg.public_base_url),
        )
        serial, cert_id = cert.serial, cert.id
    click.echo(serial)
    click.echo(f"{cfg.public_base_url.rstrip('/')}/trace/certificates/{cert_id}")
    if labels.public_url_problem(cfg.public_base_url):  # its QR code is frozen on the certificate
        click.echo(
            f"warning: PUBLIC_BASE_URL is {cfg.public_base_url!r}: this certificate's QR code opens "
            "nothing for customers; set it to the public address before printing certificates",
            err=True,
        )


@certificate_cli.command("list")
@click.option("--serial", default="", help="Part of a serial number.")
@click.option("--lot", "lot_number", default="", help="Part of a lot number.")
@click.option("--product", default="", help="Part of a product name.")
@click.option("--from", "start", default="", help="Issued on or after (YYYY-MM-DD).")
@click.option("--to", "end", default="", help="Issued on or before (YYYY-MM-DD).")
@with_appcontext
def list_certificates(serial: str, lot_number: str, product: str, start: str, end: str):
    """The issue register: serial, date, lot, product, quantity, basis, issuer, status."""
    from core import parse

    with _transaction() as session:
        found = compliance.register(
            session,
            serial=serial,
            lot_number=lot_number,
            product=product,
            start=parse.date_field(start) if start else None,
            end=parse.date_field(end) if end else None,
            limit=None,
        )
        for row in compliance.register_rows(session, found):
            click.echo("\t".join(f"{cell:g}" if isinstance(cell, float) else str(cell) for cell in row))


@click.command("producer")
@click.option("--name", help="The cooperative's (or household's) name.")
@click.option("--credit-code", "credit_code", help="统一社会信用代码 (18 characters, GB 32100).")
@click.option("--platform-code", "platform_code", help="主体码 on the national traceability platform.")
@click.option("--province")
@click.option("--county")
@click.option("--township")
@click.option("--village")
@click.option("--address", help="Street, group and house number.")
@click.option("--phone", help="The phone printed on certificates.")
@with_appcontext
def producer_command(**options: str | None) -> None:
    """Show the producer's identity (certificates, labels, trace pages), or change those given."""
    changes: dict[str, Any] = {key: value for key, value in options.items() if value is not None}
    with _transaction() as session:
        row = producer.update(session, **changes) if changes else producer.get(session)
        shown = {key: getattr(row, key) or "" for key in producer.FIELDS}
        shown["origin"] = producer.origin(row)
    for key, value in shown.items():
        click.echo(f"{key}: {value}")


COMMANDS.extend([certificate_cli, producer_command])


@click.group("gtin")
def gtin_cli() -> None:
    """GTINs per product and net content (what new lots' labels carry)."""


def _find_product(session, ref: str):
    products = port_of(current_app).products(session)
    found = next((p for p in products if str(p.id) == ref or p.slug == ref), None)
    if found is None:
        raise click.ClickException(f"no active product {ref!r} (give its id or slug)")
    return found


def _describe(key: str) -> str:
    net = gtins.read_net_content(key)
    if net.variable:
        return "by weight (variable measure)"
    return f"{net.kg} kg" if net.kg is not None else f"1 {net.piece}"


@gtin_cli.command("list")
@with_appcontext
def gtin_list() -> None:
    """Every stored GTIN: product, net content, GTIN-14."""
    with database().session_factory() as session:
        names = {p.id: p.slug for p in port_of(current_app).products(session)}
        for row in gtins.all_gtins(session):
            product = names.get(row.product_id, f"#{row.product_id}")
            click.echo(f"{row.gtin}  {product}  {_describe(row.net_content)}")


@gtin_cli.command("set")
@click.argument("product")
@click.argument("net_content")
@click.argument("gtin")
@with_appcontext
def gtin_set(product: str, net_content: str, gtin: str) -> None:
    """Give PRODUCT (id or slug) in NET_CONTENT ("5 kg", "10 斤", "1 box", "by weight") the GTIN GTIN.

    Checked like the staff page: check digit, length, GS1_COMPANY_PREFIX, indicator 9 for
    goods sold by weight, not another trade item's. Lots already labelled keep their GTIN.
    """
    with transaction() as session:
        found = _find_product(session, product)
        row = gtins.set_gtin(session, found, net_content, gtin, company_prefix=settings().gs1_company_prefix)
        click.echo(f"{row.gtin}  {found.slug}  {_describe(row.net_content)}")


@gtin_cli.command("remove")
@click.argument("product")
@click.argument("net_content")
@with_appcontext
def gtin_remove(product: str, net_content: str) -> None:
    """Forget PRODUCT's GTIN for NET_CONTENT (new lots get none; labelled lots keep theirs)."""
    with transaction() as session:
        found = _find_product(session, product)
        row = gtins.gtin_for(session, found.id, gtins.parse_net_content(net_content))
        if row is None:
            raise click.ClickException(f"{found.slug} has no GTIN for {net_content!r}")
        gtins.remove_gtin(session, row)
        click.echo(f"removed {row.gtin}")


COMMANDS.append(gtin_cli)
