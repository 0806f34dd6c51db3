"""Configuration from the environment and money in integer fen."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import ConfigError, Settings
from core.money import MoneyError, allocate, format_fen, mul_fen, parse_yuan


def test_defaults_use_sqlite_under_instance_and_store_a_secret(tmp_path):
    s = Settings.from_env({"TIANYUAN_INSTANCE_PATH": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'tianyuan.sqlite3'}"
    assert len(s.secret_key) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    # the same key next time, so sessions survive restarts
    assert Settings.from_env({"TIANYUAN_INSTANCE_PATH": str(tmp_path)}).secret_key == s.secret_key
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"
    assert not s.stripe_enabled


def test_production_refuses_to_start_without_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({"TIANYUAN_ENV": "production", "TIANYUAN_INSTANCE_PATH": str(tmp_path)})
    assert not (tmp_path / "secret_key").exists()
    s = Settings.from_env(
        {"TIANYUAN_ENV": "production", "SECRET_KEY": "k" * 40, "TIANYUAN_INSTANCE_PATH": str(tmp_path)}
    )
    assert s.is_production and s.secret_key == "k" * 40


def test_create_app_refuses_production_without_secret(tmp_path, monkeypatch):
    from app import create_app

    monkeypatch.setenv("TIANYUAN_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("TIANYUAN_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError):
        create_app()


def test_environment_is_read(tmp_path):
    s = Settings.from_env(
        {
            "TIANYUAN_INSTANCE_PATH": str(tmp_path),
            "DATABASE_URL": "postgresql+psycopg://u@h/db",
            "MQTT_URL": "mqtts://dev:p%40ss@broker.local",
            "STRIPE_SECRET_KEY": "sk_test_x",
        }
    )
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.mqtt_host_port == ("broker.local", 8883, "dev", "p@ss", True)
    assert s.stripe_enabled


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError):
        Settings.from_env({"TIANYUAN_INSTANCE_PATH": str(tmp_path), "TIANYUAN_ENV": "staging"})
    with pytest.raises(ConfigError):
        _ = Settings.from_env(
            {"TIANYUAN_INSTANCE_PATH": str(tmp_path), "MQTT_URL": "http://x"}
        ).mqtt_host_port


@pytest.mark.parametrize(
    "text,fen",
    [
        ("12.34", 1234),
        ("1,234.5", 123450),
        ("¥8", 800),
        ("0.01", 1),
        ("１２.５", 1250),
        ("￥3", 300),
    ],
)
def test_parse_yuan(text, fen):
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["", "abc", "1.234", "NaN", "Infinity", "1e999999", "-1e30", "1,2,3.4.5"])
def test_parse_yuan_refuses(text):
    with pytest.raises(MoneyError):
        parse_yuan(text)


def test_format_and_multiply():
    assert format_fen(123456) == "¥1,234.56"
    assert format_fen(-5) == "-¥0.05"
    assert mul_fen(1999, Decimal("2.5")) == 4998  # 49.975 rounds half up
    assert mul_fen(1000, 3) == 3000


def test_allocate_largest_remainder_example():
    assert allocate(1000, [1, 1, 1]) == [334, 333, 333]
    assert allocate(100, [0, 1]) == [0, 100]
    assert allocate(-1000, [1, 1, 1]) == [-334, -333, -333]


@given(
    total=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40).filter(
        lambda w: sum(w) > 0
    ),
)
def test_allocate_sums_exactly_and_is_within_one_fen(total, weights):
    parts = allocate(total, weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        assert abs(part - Fraction(total * w, weight_sum)) < 1


@pytest.mark.parametrize(
    "name,value",
    [("INGEST_BATCH_BYTES", "1000"), ("INGEST_RECEIVE_MAXIMUM", "70000"), ("INGEST_RECEIVE_MAXIMUM", "-1")],
)
def test_ingest_limits_out_of_range_are_refused(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"TIANYUAN_INSTANCE_PATH": str(tmp_path), name: value})


def test_ingest_receive_maximum_is_the_one_set_or_two_batches(tmp_path):
    from iot.ingest.config import IngestConfig

    def config(**env: str) -> IngestConfig:
        return IngestConfig.from_settings(Settings.from_env({"TIANYUAN_INSTANCE_PATH": str(tmp_path), **env}))

    assert config().receive_maximum_sent == 20000
    assert config().batch_bytes == 2 * 1024 * 1024
    # set lower for big messages: the reader then holds at most that many (batches fill by age)
    assert config(INGEST_RECEIVE_MAXIMUM="500").receive_maximum_sent == 500
    assert config(INGEST_BATCH_BYTES="1048576").batch_bytes == 1048576
