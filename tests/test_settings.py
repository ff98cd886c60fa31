"""Settings helpers fail loudly on bad values; settings mistakes become system checks."""
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from carrieropt.checks import settings_check
from carrieropt.env import database_from_url, envbool, envint


def test_envbool_rejects_garbage(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG='maybe' is not a boolean"):
        envbool("FLAG", False)


def test_envint_rejects_non_integers_and_values_below_minimum(monkeypatch):
    monkeypatch.setenv("N", "ten")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        envint("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        envint("N", 1, minimum=1)


def test_database_url_parses_postgres_and_sqlite():
    pg = database_from_url("postgres://u:p%40ss@db.internal:5433/opt?sslmode=require")
    assert (pg["ENGINE"], pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "django.db.backends.postgresql", "opt", "u", "p@ss", "db.internal", "5433")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert database_from_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"
    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://x/y")


def test_missing_secret_key_without_debug_is_a_system_check_error():
    with override_settings(DEBUG=False, SECRET_KEY=""):
        ids = [e.id for e in settings_check(None)]
    assert "carrieropt.E001" in ids


def test_webhook_url_without_secret_is_a_system_check_error():
    with override_settings(AMOP_WEBHOOK_URL="http://127.0.0.1:9/hook", AMOP_WEBHOOK_SECRET=""):
        ids = [e.id for e in settings_check(None)]
    assert "carrieropt.E004" in ids


def test_q_cluster_timeout_below_retry_and_finite_attempts():
    from django.conf import settings

    assert settings.Q_CLUSTER["timeout"] < settings.Q_CLUSTER["retry"]
    assert settings.Q_CLUSTER["max_attempts"] >= 1
