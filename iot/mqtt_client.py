"""The one place that builds a paho client: MQTT 5, paho's version 2 callbacks, the
broker's credentials and TLS from the settings.

Used by the ingester, the simulator and the alert publishers (``python -m
iot.check_alerts``, acknowledgements from the web and the API). No Flask here.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger("iot.mqtt")


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and how to log in (``MQTT_URL``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerAddress:
        host, port, username, password, tls = settings.mqtt_host_port
        return cls(host, port, username, password, tls)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def make_client(
    broker: BrokerAddress,
    client_id: str,
    *,
    manual_ack: bool = False,
    connect_timeout: float | None = None,
) -> mqtt.Client:
    """A paho client for ``broker`` (not yet connected).

    ``manual_ack``: the application acknowledges each message (the ingester, after its
    commit). ``connect_timeout``: seconds to wait for the TCP connection (paho: 5).
    """
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set()
    if connect_timeout is not None:
        client.connect_timeout = connect_timeout
    return client


def unique_client_id(base: str) -> str:
    """``base`` plus this process and a random part: for short-lived clients that must not
    take over each other's connection (several web workers publishing at once)."""
    return f"{base}-{os.getpid()}-{secrets.token_hex(3)}"


def publish_once(
    broker: BrokerAddress,
    messages: Sequence[tuple[str, str]],
    *,
    client_id: str,
    timeout: float = 1.0,
) -> bool:
    """Connect, publish ``messages`` (topic, payload) at QoS 1, wait for the broker to
    take them, disconnect. False (logged, never raised) if the broker is unreachable or
    does not confirm within about ``timeout`` seconds."""
    if not messages:
        return True
    client = make_client(broker, client_id, connect_timeout=timeout)
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(timeout * 10)))
    except (OSError, ValueError) as exc:
        log.warning("event=publish_failed broker=%s messages=%d error=%r", broker, len(messages), str(exc))
        return False
    refused: dict[int, str] = {}

    def on_publish(
        _client: mqtt.Client, _userdata: object, mid: int, reason_code: ReasonCode, _props: object
    ):
        if reason_code.is_failure:  # MQTT 5: e.g. "Not authorized" (the broker's ACL)
            refused[mid] = str(reason_code)

    client.on_publish = on_publish
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        sent = 0
        for info in infos:
            try:
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
                sent += info.is_published() and info.mid not in refused
            except (ValueError, RuntimeError):  # refused or dropped: not connected any more
                break
        if sent < len(infos):
            log.warning(
                "event=publish_failed broker=%s messages=%d unconfirmed=%d refused=%r",
                broker,
                len(messages),
                len(infos) - sent,
                sorted(set(refused.values())),
            )
        return sent == len(infos)
    finally:
        client.disconnect()
        client.loop_stop()


def publish_notifications(
    settings: Settings, messages: Sequence[tuple[str, str]], *, source: str = "web", timeout: float = 1.0
) -> bool:
    """Publish alert notifications of a committed change (acknowledgements from the web and
    the API) on a short-lived connection; a broker that is down costs at most about
    ``timeout`` seconds and a log line, never the request."""
    return publish_once(
        BrokerAddress.from_settings(settings),
        messages,
        client_id=unique_client_id(f"tianyuan-{source}"),
        timeout=timeout,
    )
