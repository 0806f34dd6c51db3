"""A small local Stripe: the endpoints the shop uses, in Stripe's response format.

- ``POST /v1/checkout/sessions`` (honours ``Idempotency-Key``), ``GET /v1/checkout/sessions/<id>``
  (with ``expand[]`` of ``payment_intent.latest_charge.balance_transaction``),
  ``POST /v1/refunds`` (idempotent too), ``GET /v1/refunds?charge=`` (a charge's refunds);
- ``GET /pay/<id>``: a stand-in for the hosted Checkout page, with a Pay button; paying
  marks the session paid, calls ``on_paid`` (a test sends the signed webhook there) and
  redirects to the session's ``success_url``.

``sign()`` builds a ``Stripe-Signature`` header with the real scheme
(``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(kind: str, obj: dict, event_id: str | None = None, created: int | None = None) -> dict:
    return {
        "id": event_id or f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": created or int(time.time()),
        "type": kind,
        "livemode": False,
        "data": {"object": obj},
    }


def _nested(pairs: list[tuple[str, str]]) -> dict:
    """Decode Stripe's form encoding (``a[b][0][c]=v``) into dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                if part == "" or key.endswith("[]"):
                    node.setdefault(part, []).append(value)
                else:
                    node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


class StripeStub:
    def __init__(self, fee_rate: float = 0.03):
        self.sessions: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.idempotent: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.fee_rate = fee_rate
        self.on_paid = None  # callable(session_dict) run when the Pay button is used
        self.on_api_call = None  # callable(method, path) run when the SDK calls the API
        self.fail_next = 0  # answer the next N API calls with HTTP 500
        self.refund_status = "succeeded"  # what a new refund reports ("pending" as for some wallets)
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(
                self, status: int, body: dict | str, content_type: str = "application/json", headers=None
            ):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{secrets.token_hex(6)}")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _params(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                query = urlsplit(self.path).query
                return _nested(
                    parse_qsl(raw, keep_blank_values=True) + parse_qsl(query, keep_blank_values=True)
                )

            def do_GET(self):
                path = urlsplit(self.path).path
                stub.requests.append(("GET", path))
                if path.startswith("/v1/") and stub.on_api_call is not None:
                    stub.on_api_call("GET", path)
                if m := re.fullmatch(r"/v1/checkout/sessions/([\w]+)", path):
                    if stub._maybe_fail(self):
                        return
                    params = self._params()
                    found = stub.sessions.get(m.group(1))
                    if found is None:
                        return self._send(404, stub.error("No such checkout.session", "resource_missing"))
                    return self._send(200, stub.expanded(found, params.get("expand") or []))
                if path == "/v1/refunds":
                    if stub._maybe_fail(self):
                        return
                    params = self._params()
                    return self._send(200, stub.list_refunds(params))
                if m := re.fullmatch(r"/pay/([\w]+)", path):
                    found = stub.sessions.get(m.group(1))
                    if found is None:
                        return self._send(404, "no such session", "text/plain")
                    html = (
                        "<!doctype html><meta charset=utf-8><title>Stripe Checkout (test stub)</title>"
                        f"<h1>Pay ¥{found['amount_total'] / 100:.2f}</h1>"
                        f"<form method=post action=/pay/{found['id']}><button id=pay "
                        f"type=submit>Pay</button></form>"
                    )
                    return self._send(200, html, "text/html; charset=utf-8")
                return self._send(404, stub.error("Unrecognized request URL", "invalid_request_error"))

            def do_POST(self):
                path = urlsplit(self.path).path
                stub.requests.append(("POST", path))
                if path.startswith("/v1/") and stub.on_api_call is not None:
                    stub.on_api_call("POST", path)
                if m := re.fullmatch(r"/pay/([\w]+)", path):
                    self._params()
                    found = stub.complete(m.group(1))
                    if stub.on_paid is not None:
                        stub.on_paid(found)
                    target = found["success_url"].replace("{CHECKOUT_SESSION_ID}", found["id"])
                    return self._send(303, "", "text/plain", {"Location": target})
                if stub._maybe_fail(self):
                    return
                params = self._params()
                if m := re.fullmatch(r"/v1/checkout/sessions/([\w]+)/expire", path):
                    found = stub.sessions.get(m.group(1))
                    if found is None or found["status"] != "open":
                        return self._send(
                            400, stub.error("Only open sessions can be expired", "invalid_request_error")
                        )
                    return self._send(200, stub.expire(found["id"]))
                key = self.headers.get("Idempotency-Key")
                with stub.lock:
                    if key and (path, key) in stub.idempotent:
                        return self._send(
                            200, stub.idempotent[(path, key)], headers={"Idempotent-Replayed": "true"}
                        )
                    if path == "/v1/checkout/sessions":
                        status, body = 200, stub.create_session(params, self.headers.get("Host"))
                    elif path == "/v1/refunds":
                        status, body = stub.create_refund(params)
                    else:
                        status, body = 404, stub.error("Unrecognized request URL", "invalid_request_error")
                    if key and status == 200:
                        stub.idempotent[(path, key)] = body
                return self._send(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # a short poll: shutdown() waits for it, once per test
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> StripeStub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- behaviour ---------------------------------------------------------------------

    def _maybe_fail(self, handler) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            handler._send(500, self.error("Something went wrong", "api_error"))
            return True
        return False

    @staticmethod
    def error(message: str, code: str) -> dict:
        kind = "api_error" if code == "api_error" else "invalid_request_error"
        return {"error": {"type": kind, "code": code, "message": message}}

    def create_session(self, params: dict, host: str | None) -> dict:
        sid = f"cs_test_{secrets.token_hex(12)}"
        items = params.get("line_items") or []
        amount = sum(int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items)
        session = {
            "id": sid,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "currency": params.get("currency") or items[0]["price_data"]["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "mode": params.get("mode", "payment"),
            "payment_method_types": params.get("payment_method_types") or ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "payment_intent": None,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "expires_at": int(params.get("expires_at") or time.time() + 86400),
            "customer_email": params.get("customer_email"),
            "livemode": False,
            "url": f"{self.url}/pay/{sid}",
            "_params": params,
        }
        self.sessions[sid] = session
        return self.public(session)

    @staticmethod
    def public(session: dict) -> dict:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    def complete(self, sid: str, *, paid: bool = True) -> dict:
        """The customer paid: the session as Stripe sends it in checkout.session.completed."""
        session = self.sessions[sid]
        if session["payment_intent"] is None:
            session["payment_intent"] = f"pi_{secrets.token_hex(12)}"
            session["_charge"] = f"ch_{secrets.token_hex(12)}"
        session["status"] = "complete"
        session["payment_status"] = "paid" if paid else "unpaid"
        return self.public(session)

    def expire(self, sid: str) -> dict:
        session = self.sessions[sid]
        session["status"] = "expired"
        return self.public(session)

    def fee(self, amount: int) -> int:
        return int(round(amount * self.fee_rate))

    def expanded(self, session: dict, expand: list[str]) -> dict:
        body = self.public(session)
        if session.get("payment_intent") and any(e.startswith("payment_intent") for e in expand):
            amount = session["amount_total"]
            body["payment_intent"] = {
                "id": session["payment_intent"],
                "object": "payment_intent",
                "amount": amount,
                "currency": session["currency"],
                "status": "succeeded",
                "latest_charge": {
                    "id": session["_charge"],
                    "object": "charge",
                    "amount": amount,
                    "balance_transaction": {
                        "id": f"txn_{session['_charge'][3:]}",
                        "object": "balance_transaction",
                        "amount": amount,
                        "fee": self.fee(amount),
                        "net": amount - self.fee(amount),
                        "currency": session["currency"],
                    },
                },
            }
        return body

    def session_for_intent(self, pi: str) -> dict | None:
        return next((s for s in self.sessions.values() if s.get("payment_intent") == pi), None)

    def refunded(self, pi: str) -> int:
        return sum(
            r["amount"]
            for r in self.refunds.values()
            if r["payment_intent"] == pi and r["status"] not in ("failed", "canceled")
        )

    def create_refund(self, params: dict) -> tuple[int, dict]:
        pi = params.get("payment_intent")
        session = self.session_for_intent(pi) if pi else None
        if session is None:
            return 400, self.error(f"No such payment_intent: '{pi}'", "resource_missing")
        amount = int(params.get("amount") or session["amount_total"] - self.refunded(pi))
        if amount <= 0 or amount > session["amount_total"] - self.refunded(pi):
            return 400, self.error(
                "Refund amount is greater than unrefunded amount on charge", "amount_too_large"
            )
        rid = f"re_{secrets.token_hex(12)}"
        refund = {
            "id": rid,
            "object": "refund",
            "amount": amount,
            "currency": session["currency"],
            "charge": session["_charge"],
            "payment_intent": pi,
            "metadata": params.get("metadata") or {},
            "status": self.refund_status,
            "created": int(time.time()),
        }
        self.refunds[rid] = refund
        return 200, refund

    def settle_refund(self, rid: str, status: str) -> dict:
        """A pending refund ends (``failed``, ``canceled`` or ``succeeded``): the refund object of a
        ``refund.updated`` / ``refund.failed`` / ``charge.refund.updated`` event."""
        refund = self.refunds[rid]
        refund["status"] = status
        if status in ("failed", "canceled"):
            refund["failure_reason"] = "expired_or_canceled_card"
        return dict(refund)

    def list_refunds(self, params: dict) -> dict:
        """``GET /v1/refunds?charge=`` (or ``payment_intent=``): every refund, newest first, as
        Stripe lists them (failed ones too), one page (``has_more`` false)."""
        found = [
            dict(r)
            for r in self.refunds.values()
            if (not params.get("charge") or r["charge"] == params["charge"])
            and (not params.get("payment_intent") or r["payment_intent"] == params["payment_intent"])
        ]
        found.sort(key=lambda r: r["created"], reverse=True)
        return {"object": "list", "url": "/v1/refunds", "has_more": False, "data": found}

    def charge(self, pi: str, *, listed: bool = True) -> dict:
        """The charge object of a ``charge.refunded`` event: refunds listed, as with expand, or
        (``listed=False``) as Stripe sends it by default since API 2022-11-15, without them."""
        session = self.session_for_intent(pi)
        refunds = [r for r in self.refunds.values() if r["payment_intent"] == pi]
        refunds = [r for r in refunds if r["status"] not in ("failed", "canceled")]
        return {
            "id": session["_charge"],
            "object": "charge",
            "amount": session["amount_total"],
            "amount_refunded": sum(r["amount"] for r in refunds),
            "currency": session["currency"],
            "payment_intent": pi,
            "metadata": {},
            "refunded": sum(r["amount"] for r in refunds) >= session["amount_total"],
            **({"refunds": {"object": "list", "data": refunds}} if listed else {}),
        }

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)
