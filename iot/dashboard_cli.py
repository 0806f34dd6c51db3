"""CLI for the dashboard side of iot: ``flask iot data rebuild-rollups | retention | check-alerts``.

``data_cli`` is a click group meant to be nested in ``flask iot`` (``iot_cli.add_command(data_cli)``).
"""

from __future__ import annotations

import time

import click
from flask.cli import AppGroup
from sqlalchemy import select

from core import clock
from core.web import db_session, settings

data_cli = AppGroup("data", help="Rollups, retention of raw readings and time-based alerts.")


def _greenhouse_ids(codes: tuple[str, ...]) -> list[int] | None:
    from iot.models import Greenhouse

    if not codes:
        return None
    rows = (
        db_session().execute(select(Greenhouse.code, Greenhouse.id).where(Greenhouse.code.in_(codes))).all()
    )
    found = dict(rows)
    missing = [c for c in codes if c not in found]
    if missing:
        raise click.ClickException(f"no greenhouse {missing[0]!r}")
    return [found[c] for c in codes]


@data_cli.command("rebuild-rollups")
@click.option("--greenhouse", "codes", multiple=True, help="Greenhouse code (repeatable); default all.")
@click.option("--since", help="First day to rebuild (YYYY-MM-DD, local); default the first raw reading.")
def rebuild_rollups(codes: tuple[str, ...], since: str | None):
    """Recompute hourly and daily rollups from raw readings, with a progress bar."""
    from iot import rollups

    session = db_session()
    start = None
    if since:
        try:
            start = clock.parse_time(since + "T00:00:00" if len(since) == 10 else since, 0)
        except ValueError as exc:
            raise click.BadParameter("use YYYY-MM-DD", param_hint="--since") from exc
    ids = _greenhouse_ids(codes)
    began = time.monotonic()
    with click.progressbar(length=1, label="Rebuilding rollups", show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        written = rollups.rebuild(session, greenhouse_ids=ids, start=start, progress=progress)
    session.commit()
    click.echo(f"{written} hourly buckets rebuilt in {time.monotonic() - began:.1f} s")


@data_cli.command("retention")
@click.option(
    "--days", type=int, default=None, help="Keep this many days of raw readings (default RAW_RETENTION_DAYS)."
)
@click.option(
    "--hourly-days",
    type=int,
    default=None,
    help="Also prune hourly rollups older than this (daily are kept).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def retention(days: int | None, hourly_days: int | None, dry_run: bool):
    """Delete raw readings older than the retention period; rollups stay."""
    from iot import retention as svc

    session = db_session()
    now = clock.now_ts()
    days = days if days is not None else settings().raw_retention_days
    plans = [("iot_readings", days)]
    if hourly_days is not None:
        plans.append(("iot_rollups_hourly", hourly_days))
    for table, keep in plans:
        try:
            before = svc.cutoff(now, keep)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        n = svc.count_older(session, before, table)
        click.echo(f"{table}: {n} rows older than {keep} days")
        if dry_run or not n:
            continue
        deleted = 0
        with click.progressbar(length=n, label=f"Pruning {table}") as bar:
            for piece in svc.prune(session, before, table=table):
                session.commit()
                deleted += piece.deleted
                bar.update(piece.deleted)
        click.echo(f"{table}: {deleted} rows deleted")


def mqtt_notifier(cfg):
    """A connected ``MqttNotifier`` for the settings' broker, or None (with a warning) if unreachable."""
    import paho.mqtt.client as mqtt

    from iot.alerts import MqttNotifier

    host, port, user, password, tls = cfg.mqtt_host_port
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"{cfg.mqtt_client_id}-alerts", protocol=mqtt.MQTTv5
    )
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set()
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        click.echo(
            f"warning: MQTT broker {host}:{port} unreachable ({exc}); alerts are shown in the app only",
            err=True,
        )
        return None
    client.loop_start()
    return MqttNotifier(client, cfg.mqtt_topic_prefix)


@data_cli.command("check-alerts")
@click.option("--every", type=float, default=0, help="Repeat every N seconds (0: once).")
@click.option("--mqtt/--no-mqtt", default=True, help="Publish alert events to <prefix>/<greenhouse>/alerts.")
def check_alerts(every: float, mqtt: bool):
    """Open/close alerts for silent sensors and offline devices (run from cron or with --every)."""
    from iot import alerts

    cfg = settings()
    notifier = mqtt_notifier(cfg) if mqtt else None
    try:
        while True:
            session = db_session()
            changed = alerts.evaluate_time_based(
                session, clock.now_ts(), notifier, prefix=cfg.mqtt_topic_prefix
            )
            session.commit()
            if notifier is not None:
                notifier.flush()
            click.echo(f"{len(changed)} alerts opened or closed")
            if not every:
                break
            time.sleep(every)
    finally:
        if notifier is not None:
            notifier.client.loop_stop()
            notifier.client.disconnect()


@data_cli.command("backfill-demo")
@click.option("--days", type=int, default=14)
def backfill_demo(days: int):
    """Generate ~N days of readings and irrigation for greenhouses that have none (demo)."""
    from iot.history import backfill_demo_history

    n = backfill_demo_history(db_session(), days=days)
    db_session().commit()
    click.echo(f"{n} readings generated")
