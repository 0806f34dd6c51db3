"""``python -m iot.check_alerts [--every 60]``: alerts that time opens and closes.

Silent sensors and offline devices are noticed by the clock, not by a message, so this
worker runs next to the ingester (or from cron without ``--every``). Each tick opens a
fresh session (it sees what the ingester and the web committed meanwhile), evaluates
the rules, commits, and only then publishes the events over MQTT
(``<prefix>/<greenhouse>/alerts``). A tick that fails on the database is logged and the
next one tries again.

No Flask here; ``flask iot data check-alerts`` runs the same ``run``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core import clock
from core.config import Settings
from core.db import make_engine, make_session_factory
from iot import alerts
from iot.mqtt_client import BrokerAddress, make_client

log = logging.getLogger("iot.check_alerts")


def connect_notifier(settings: Settings) -> alerts.MqttNotifier | None:
    """A connected ``MqttNotifier`` for the settings' broker, or None (logged) if unreachable."""
    broker = BrokerAddress.from_settings(settings)
    client = make_client(broker, f"{settings.mqtt_client_id}-alerts")
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except (OSError, ValueError) as exc:
        log.warning("MQTT broker %s unreachable (%s); alerts are shown in the app only", broker, exc)
        return None
    client.loop_start()
    return alerts.MqttNotifier(client, settings.mqtt_topic_prefix)


def check_once(
    session_factory: Callable[[], Session], notifier: alerts.MqttNotifier | None, prefix: str
) -> int:
    """One tick in its own session: evaluate, commit, then publish. Returns alerts changed."""
    outbox = alerts.Outbox()
    with session_factory() as session:
        changed = alerts.evaluate_time_based(session, clock.now_ts(), outbox, prefix=prefix)
        session.commit()
    if notifier is not None:  # a broker that went away loses the events (logged), not the tick
        notifier.publish_all(outbox.take())
        notifier.flush()
    return len(changed)


def run(
    settings: Settings,
    *,
    every: float = 0.0,
    mqtt: bool = True,
    session_factory: sessionmaker[Session] | Callable[[], Session] | None = None,
    echo: Callable[[str], object] = print,
    stop: threading.Event | None = None,
    ticks: int | None = None,
) -> int:
    """Check once, or every ``every`` seconds until ``stop`` is set (or ``ticks`` are done).

    ``session_factory``: where sessions come from (default: a new engine for the
    settings' database). Returns the number of ticks run.
    """
    if not 0 <= every <= 86400:  # NaN fails this too
        raise ValueError("every must be 0 (once) or up to 86400 seconds")
    clock.configure(settings.timezone)
    engine = None
    if session_factory is None:
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
    notifier = connect_notifier(settings) if mqtt else None
    stop = stop or threading.Event()
    done = 0
    try:
        while True:
            try:
                changed = check_once(session_factory, notifier, settings.mqtt_topic_prefix)
            except DBAPIError as exc:
                if not every:
                    raise
                log.error("alert check failed (next try in %s s): %s", every, exc.orig or exc)
            else:
                echo(f"{changed} alerts opened or closed")
            done += 1
            if not every or (ticks is not None and done >= ticks) or stop.wait(every):
                break
    finally:
        if notifier is not None:
            notifier.client.loop_stop()
            notifier.client.disconnect()
        if engine is not None:
            engine.dispose()
    return done


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:  # refuses NaN too
        raise argparse.ArgumentTypeError("give 0 (once) or 1 to 86400 seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iot.check_alerts",
        description="Open and close alerts for silent sensors and offline devices.",
    )
    parser.add_argument("--every", type=_interval, default=0.0, help="repeat every N seconds (0: once)")
    parser.add_argument(
        "--mqtt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish alert events to <prefix>/<greenhouse>/alerts",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    stop = threading.Event()

    def _term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    run(Settings.from_env(), every=args.every, mqtt=args.mqtt, stop=stop, echo=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
