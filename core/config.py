"""Settings read from the environment, once, by whoever starts a process.

Nothing here runs at import time: call ``Settings.from_env()`` from ``create_app``,
the ingester's entry point or a script.
"""

from __future__ import annotations

import os
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.clock import DEFAULT_TIMEZONE, valid_timezone

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message says which and how to fix it."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None


def _float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "")
    try:
        return float(raw) if raw.strip() else None
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Every setting Tianyuan reads. See README.md, "Configuration"."""

    env: str = "development"  # development | production | testing
    instance_path: Path = PROJECT_ROOT / "instance"
    database_url: str = ""
    secret_key: str = ""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_topic_prefix: str = "farm"
    mqtt_client_id: str = "tianyuan-ingester"
    unknown_device_policy: str = "quarantine"  # quarantine | provision
    # a quarantined payload keeps at most this many bytes (with its original size and SHA-256)
    iot_quarantine_max_bytes: int = 64 * 1024
    # the ingester's /health fails when messages have waited this long with no commit
    ingest_health_stall_s: int = 60
    # a batch the ingester's writer stores holds at most this many payload bytes
    ingest_batch_bytes: int = 2 * 1024 * 1024
    # MQTT 5 Receive Maximum: messages the broker may send the ingester before its acks
    # (0: automatic, 20,000 or two batches); the reader holds at most this many
    ingest_receive_maximum: int = 0
    stripe_secret_key: str = ""
    stripe_publishable_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""
    public_base_url: str = "http://127.0.0.1:5000"
    # the cooperative's GS1 Company Prefix (from GS1 China, 中国物品编码中心), 4-12 digits, or ""
    # (none yet: GTINs staff enter are checked for length and check digit only)
    gs1_company_prefix: str = ""
    raw_retention_days: int = 90
    irrigation_max_hours: int = 12  # the longest run a stop without event id may close
    timezone: str = DEFAULT_TIMEZONE
    login_max_failures: int = 5  # attempts per account and client address in the window
    login_lockout_minutes: int = 15  # the window
    login_max_per_address: int = 30  # attempts per client address (any account) in the window
    login_max_per_account_day: int = 100  # attempts per account (any address) in 24 hours
    trace_max_misses: int = 30  # trace lookups that find nothing, per client address and window
    trace_miss_window_minutes: int = 15
    trusted_proxies: int = 0  # reverse proxies in front whose X-Forwarded-For is believed
    stripe_payment_methods: str = "card,alipay,wechat_pay"  # Checkout payment method types, comma-separated
    shop_listing_cache_seconds: float | None = None  # None: 3 s, or 0 when testing
    # the cooperative's GLN (13 digits, from GS1 China under GS1_COMPANY_PREFIX); when set,
    # EPCIS locations are SGLNs (urn:epc:id:sgln:...) instead of the app's location pages
    gs1_gln: str = ""

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.stripe_secret_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); ``overrides`` win."""
        env = os.environ if environ is None else environ
        instance = Path(env.get("TIANYUAN_INSTANCE_PATH") or PROJECT_ROOT / "instance")
        values: dict[str, Any] = dict(
            env=env.get("TIANYUAN_ENV", "development"),
            instance_path=instance,
            database_url=env.get("DATABASE_URL", ""),
            secret_key=env.get("SECRET_KEY", ""),
            mqtt_url=env.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
            mqtt_topic_prefix=env.get("MQTT_TOPIC_PREFIX", "farm"),
            mqtt_client_id=env.get("MQTT_CLIENT_ID", "tianyuan-ingester"),
            unknown_device_policy=env.get("IOT_UNKNOWN_DEVICE_POLICY", "quarantine"),
            iot_quarantine_max_bytes=_int(env, "IOT_QUARANTINE_MAX_BYTES", 64 * 1024),
            ingest_health_stall_s=_int(env, "INGEST_HEALTH_STALL_SECONDS", 60),
            ingest_batch_bytes=_int(env, "INGEST_BATCH_BYTES", 2 * 1024 * 1024),
            ingest_receive_maximum=_int(env, "INGEST_RECEIVE_MAXIMUM", 0),
            stripe_secret_key=env.get("STRIPE_SECRET_KEY", ""),
            stripe_publishable_key=env.get("STRIPE_PUBLISHABLE_KEY", ""),
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", ""),
            stripe_api_base=env.get("STRIPE_API_BASE", ""),
            public_base_url=env.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
            gs1_company_prefix=env.get("GS1_COMPANY_PREFIX", ""),
            raw_retention_days=_int(env, "RAW_RETENTION_DAYS", 90),
            irrigation_max_hours=_int(env, "IRRIGATION_MAX_HOURS", 12),
            timezone=env.get("TIANYUAN_TIMEZONE", DEFAULT_TIMEZONE),
            login_max_failures=_int(env, "LOGIN_MAX_FAILURES", 5),
            login_lockout_minutes=_int(env, "LOGIN_LOCKOUT_MINUTES", 15),
            login_max_per_address=_int(env, "LOGIN_MAX_PER_ADDRESS", 30),
            login_max_per_account_day=_int(env, "LOGIN_MAX_PER_ACCOUNT_DAY", 100),
            trace_max_misses=_int(env, "TRACE_MAX_MISSES", 30),
            trace_miss_window_minutes=_int(env, "TRACE_MISS_WINDOW_MINUTES", 15),
            trusted_proxies=_int(env, "TRUSTED_PROXIES", 0),
            stripe_payment_methods=env.get("STRIPE_PAYMENT_METHODS", "card,alipay,wechat_pay"),
            shop_listing_cache_seconds=_float(env, "SHOP_LISTING_CACHE_SECONDS"),
            gs1_gln=env.get("GS1_GLN", "").strip(),
        )
        values.update(overrides)
        values["instance_path"] = Path(values["instance_path"])
        settings = cls(**values)
        return settings.resolved()

    def resolved(self) -> Settings:
        """Fill derived defaults (database file, secret key) and validate."""
        if self.env not in {"development", "production", "testing"}:
            raise ConfigError(f"TIANYUAN_ENV must be development, production or testing, not {self.env!r}")
        if self.unknown_device_policy not in {"quarantine", "provision"}:
            raise ConfigError("IOT_UNKNOWN_DEVICE_POLICY must be 'quarantine' or 'provision'")
        if self.iot_quarantine_max_bytes < 0:
            raise ConfigError("IOT_QUARANTINE_MAX_BYTES must be 0 or more")
        if self.ingest_health_stall_s < 1:
            raise ConfigError("INGEST_HEALTH_STALL_SECONDS must be at least 1")
        if self.ingest_batch_bytes < 64 * 1024:
            raise ConfigError("INGEST_BATCH_BYTES must be at least 65536")
        if not 0 <= self.ingest_receive_maximum <= 65535:
            raise ConfigError("INGEST_RECEIVE_MAXIMUM must be 0 (automatic) or 1 to 65535")
        if not 1 <= self.irrigation_max_hours <= 24 * 7:
            raise ConfigError(f"IRRIGATION_MAX_HOURS must be 1 to 168 hours, not {self.irrigation_max_hours}")
        if not valid_timezone(self.timezone):
            raise ConfigError(f"TIANYUAN_TIMEZONE {self.timezone!r} is not a time zone (e.g. Asia/Shanghai)")
        prefix = _gs1_company_prefix(self.gs1_company_prefix)
        if self.gs1_gln:
            _check_gln(self.gs1_gln, prefix)
        if self.trace_max_misses < 1 or self.trace_miss_window_minutes < 1:
            raise ConfigError("TRACE_MAX_MISSES and TRACE_MISS_WINDOW_MINUTES must be at least 1")
        database_url = self.database_url or f"sqlite:///{self.instance_path / 'tianyuan.sqlite3'}"
        secret_key = self.secret_key
        if not secret_key:
            if self.is_production:
                raise ConfigError(
                    "SECRET_KEY is not set. In production Tianyuan refuses to start without one: "
                    "set SECRET_KEY to a long random string (python -c 'import secrets; "
                    "print(secrets.token_hex(32))')."
                )
            secret_key = _stored_secret_key(self.instance_path)
        return replace(self, database_url=database_url, secret_key=secret_key, gs1_company_prefix=prefix)

    @property
    def mqtt_host_port(self) -> tuple[str, int, str | None, str | None, bool]:
        """(host, port, username, password, tls) parsed from MQTT_URL."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(self.mqtt_url)
        if parts.scheme not in {"mqtt", "mqtts", "tcp"}:
            raise ConfigError(f"MQTT_URL must start with mqtt:// or mqtts://, not {self.mqtt_url!r}")
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return parts.hostname or "127.0.0.1", port, user, password, tls


def _check_gln(gln: str, company_prefix: str) -> None:
    """A GLN: 13 digits with a valid GS1 check digit, under the configured company prefix."""
    if not (gln.isdigit() and len(gln) == 13):
        raise ConfigError(f"GS1_GLN must be 13 digits, not {gln!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(gln[:-1])))
    if str((10 - total % 10) % 10) != gln[-1]:
        raise ConfigError(f"GS1_GLN {gln} has a wrong check digit (a typing error?)")
    prefix = "".join(ch for ch in company_prefix if ch.isdigit())
    if not prefix or not gln.startswith(prefix) or len(prefix) >= 12:
        raise ConfigError(
            f"GS1_GLN {gln} must start with GS1_COMPANY_PREFIX ({company_prefix!r}): the SGLN of a "
            "location is company prefix . location reference . extension"
        )


def _gs1_company_prefix(raw: str) -> str:
    """GS1_COMPANY_PREFIX as digits ("" when not set), or a ``ConfigError`` saying what it must be.

    Full-width digits and spaces are forgiven (an input method types them). A GS1 Company
    Prefix is 4 to 12 digits; one in a range GS1 keeps for other uses (restricted
    circulation 02, 04, 20-29; coupons 98-99; ISSN/ISBN 977-979) is no company's prefix.
    """
    text = "".join(unicodedata.normalize("NFKC", raw or "").split())
    if not text:
        return ""
    if not (text.isascii() and text.isdigit() and 4 <= len(text) <= 12):
        raise ConfigError(
            f"GS1_COMPANY_PREFIX must be your GS1 Company Prefix, 4 to 12 digits (e.g. 6901234), "
            f"or empty until GS1 China (中国物品编码中心) has allocated one; not {raw!r}"
        )
    if text[:2] in {"02", "04", "98", "99"} or "20" <= text[:2] <= "29" or text[:3] in {"977", "978", "979"}:
        raise ConfigError(
            f"GS1_COMPANY_PREFIX {raw!r} is in a range GS1 reserves (restricted circulation, coupons, "
            "ISSN/ISBN), not a company prefix: set the prefix GS1 China allocated, or leave it empty"
        )
    return text


def _stored_secret_key(instance_path: Path) -> str:
    """Return the secret key stored in ``instance/secret_key``, creating it on first use."""
    path = instance_path / "secret_key"
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()
