"""CLI: ``flask shop ...``."""

from __future__ import annotations

from flask.cli import AppGroup

shop_cli = AppGroup("shop", help="shop commands.")
