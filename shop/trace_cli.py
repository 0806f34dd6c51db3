"""CLI for traceability: ``flask shop export-epcis LOT [--output FILE]``."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext


@click.command("export-epcis")
@click.argument("lot")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the document to FILE instead of standard output.",
)
@with_appcontext
def export_epcis(lot, output):
    """Write LOT's events (lot number or trace code) as an EPCIS 2.0 JSON-LD document."""
    from core.web import database, settings
    from shop import epcis, lots

    cfg = settings()
    with database().session_factory() as session:
        found = lots.lot_by_number(session, lot) or lots.lot_by_code(session, lot)
        if found is None:
            raise click.ClickException(f"no lot {lot!r}")
        document = epcis.export_lot(session, found, cfg.public_base_url, cfg.gs1_company_prefix)
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(
            f"wrote {len(document['epcisBody']['eventList'])} events of lot {found.lot_number} to {output}"
        )
    else:
        click.echo(text)
