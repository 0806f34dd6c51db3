"""CLI: ``flask iot ...``."""

from __future__ import annotations

from flask.cli import AppGroup

iot_cli = AppGroup("iot", help="iot commands.")
