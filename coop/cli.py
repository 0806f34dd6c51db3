"""CLI: ``flask coop ...``."""

from __future__ import annotations

from flask.cli import AppGroup

coop_cli = AppGroup("coop", help="coop commands.")
