"""CLI for traceability: ``flask shop export-epcis LOT [--output FILE]``.

``shop.cli`` adds ``COMMANDS`` to the ``flask shop`` group. Sales come from the shop
through the ``ShopPort`` wired in when the app registered the trace blueprint.
"""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import with_appcontext

from core.web import database, settings
from shop.trace import epcis
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
