"""``POST /stripe/webhook``: Stripe's signed event notifications (no CSRF, no login)."""

from __future__ import annotations

import logging

from flask import Blueprint, request

from core.web import attempt, csrf_exempt, db_session, json_error, settings
from shop import webhooks

bp = Blueprint("stripe_webhook", __name__)
log = logging.getLogger(__name__)


@bp.post("/stripe/webhook")
@csrf_exempt
def stripe_webhook():
    """Verify the signature on the raw body, record the event once, act on it."""
    payload = request.get_data(cache=False)
    try:
        event = webhooks.verify(
            payload, request.headers.get("Stripe-Signature"), settings().stripe_webhook_secret
        )
    except webhooks.BadSignature as exc:
        log.warning("rejected Stripe webhook: %s", exc)
        return json_error(400, "invalid signature")
    try:
        with attempt(flash_error=False) as result:
            outcome = webhooks.handle(db_session(), event, settings())
    except Exception:  # rolled back; Stripe retries, so nothing is lost
        log.exception("Stripe event %s failed", event.get("id"))
        return json_error(500, "event not processed; Stripe will retry")
    if not result.ok:
        log.error("Stripe event %s refused: %s", event.get("id"), result.exception)
        return json_error(500, "event not processed; Stripe will retry")
    return {"received": True, "outcome": outcome}
