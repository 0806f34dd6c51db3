"""The ingester's logs: one ``key=value`` line per event (``event=batch stored=500 ms=12.3``)."""

from __future__ import annotations

import json
import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def kv(event: str, **fields: object) -> str:
    """A structured log line: ``event=batch stored=500 ms=12.3``."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        if isinstance(value, float):
            value = f"{value:.3f}".rstrip("0").rstrip(".")
        elif isinstance(value, str) and (" " in value or not value):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts)


def setup(level: int | str = logging.INFO) -> None:
    """Log to stderr in the ingester's format (a no-op if logging is already set up)."""
    if isinstance(level, str):
        level = level.upper()
    logging.basicConfig(level=level, stream=sys.stderr, format=FORMAT)
