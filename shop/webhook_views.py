"""``POST /stripe/webhook``: Stripe's signed event notifications (no CSRF, no login)."""

from __future__ import annotations

import logging

from flask import Blueprint, request

from core.web import attempt, csrf_exempt, db_session, json_error, settings
from shop import webhooks

bp = Blueprint("stripe_webhook", __name__)
log = logging.getLogger(__name__)
# what a well-signed event whose data is not what we expect raises while it is applied
DATA_ERRORS = (TypeError, KeyError, AttributeError, IndexError, ValueError, OverflowError)


def _unprocessable(payload: bytes, exc: webhooks.Unprocessable):
    """Record the body for staff (once) and answer 400: Stripe's retries get the same answer."""
    with attempt(flash_error=False):
        webhooks.record_unprocessable(db_session(), payload, exc)
    return json_error(400, f"unprocessable event: {exc.reason}")


@bp.post("/stripe/webhook")
@csrf_exempt
def stripe_webhook():
    """Verify the signature on the raw body, read it, record the event once, act on it.

    400: a bad, stale or future signature (nothing recorded), or a signed body we cannot read
    (recorded as unprocessable, with the reason, for staff). 500 only for a failure of ours
    (the database), so Stripe retries and nothing is lost.
    """
    payload = request.get_data(cache=False)
    try:
        event = webhooks.verify(
            payload, request.headers.get("Stripe-Signature"), settings().stripe_webhook_secret
        )
    except webhooks.BadSignature as exc:
        log.warning("rejected Stripe webhook: %s", exc)
        return json_error(400, "invalid signature")
    except webhooks.Unprocessable as exc:
        return _unprocessable(payload, exc)
    try:
        with attempt(flash_error=False) as result:
            outcome = webhooks.handle(db_session(), event, settings())
    except webhooks.Unprocessable as exc:
        return _unprocessable(payload, exc)
    except DATA_ERRORS as exc:  # rolled back: the event's data is not what its type promises
        log.exception("Stripe event %s could not be applied", event.get("id"))
        reason = f"could not be applied ({type(exc).__name__})"
        unreadable = webhooks.Unprocessable(reason, event_id=event["id"], kind=event["type"])
        return _unprocessable(payload, unreadable)
    except Exception:  # rolled back; Stripe retries, so nothing is lost
        log.exception("Stripe event %s failed", event.get("id"))
        return json_error(500, "event not processed; Stripe will retry")
    if not result.ok:
        log.error("Stripe event %s refused: %s", event.get("id"), result.exception)
        return json_error(500, "event not processed; Stripe will retry")
    return {"received": True, "outcome": outcome}
