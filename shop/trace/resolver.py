"""The web side of public lookups: the miss limits from the settings, each lookup committed
(its miss counted even when the answer is a 404), and the 429 page (``shop.trace.lookup``)."""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn

from flask import Response, abort, render_template

from core.throttle import Throttled
from core.web import attempt, client_address, db_session, settings
from shop.trace import lookup
from shop.trace.models import HarvestLot


def miss_limits() -> lookup.MissLimits:
    cfg = settings()
    return lookup.MissLimits(cfg.trace_max_misses, timedelta(minutes=cfg.trace_miss_window_minutes))


def too_many(exc: Throttled) -> NoReturn:
    """Answer 429 with a page in the visitor's language and ``Retry-After``."""
    response = Response(
        render_template("trace/too_many.html", minutes=exc.params.get("minutes", 1)), status=429
    )
    response.headers["Retry-After"] = str(exc.retry_after_seconds)
    response.headers["Cache-Control"] = "no-store"
    abort(response)


def _throttled(exc: BaseException | None) -> None:
    if isinstance(exc, Throttled):
        too_many(exc)


def lot_by_code(code: str) -> HarvestLot | None:
    with attempt(flash_error=False) as result:
        lot = lookup.lot_by_code(db_session(), code, client_address(), miss_limits())
    _throttled(result.exception)
    return lot if result.ok else None


def lot_by_link(gtin: str, lot_number: str) -> HarvestLot | None:
    with attempt(flash_error=False) as result:
        lot = lookup.lot_by_link(db_session(), gtin, lot_number, client_address(), miss_limits())
    _throttled(result.exception)
    return lot if result.ok else None


def product_id_by_gtin(gtin: str) -> int | None:
    with attempt(flash_error=False) as result:
        found = lookup.product_id_by_gtin(db_session(), gtin, client_address(), miss_limits())
    _throttled(result.exception)
    return found if result.ok else None
