"""CLI for traceability: ``flask shop export-epcis LOT [--output FILE]`` and
``flask shop gtin list|set|remove`` (GTINs per product and net content, ``shop.trace.gtins``).

``shop.cli`` adds ``COMMANDS`` to the ``flask shop`` group. Sales come from the shop
through the ``ShopPort`` wired in when the app registered the trace blueprint.
"""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import with_appcontext

from core.cli import transaction
from core.web import database, settings
from shop.trace import epcis, gtins
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
            session, found, cfg.public_base_url, cfg.gs1_company_prefix, sales_of=shop.sales_of
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


COMMANDS = [export_epcis, gtin_cli]
