"""PushTuning: every PUSH_* setting is declared (config/settings.py) and read from there; envfloat fails loudly."""
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from carrieropt.env import envfloat
from pushes.tuning import PushTuning

PUSH_SETTINGS = ["PUSH_BATCH_SIZE", "PUSH_DEFAULT_RATE_PER_MINUTE", "PUSH_RATE_MIN_SAMPLE", "PUSH_MIN_SLACK_MINUTES",
                 "PUSH_CALL_TIMEOUT", "PUSH_READ_ATTEMPTS", "PUSH_SEND_ATTEMPTS", "PUSH_BACKOFF_BASE", "PUSH_BACKOFF_CAP",
                 "PUSH_RESEND_MARGIN_SECONDS", "PUSH_LEASE_SECONDS", "PUSH_VERIFY_DELAY_SECONDS", "PUSH_RUN_SECONDS",
                 "PUSH_MAX_BATCH_CLAIMS"]


def test_every_push_setting_is_declared():
    from config import settings as module

    assert all(hasattr(module, name) for name in PUSH_SETTINGS)
    # A batch task yields well inside django-q2's timeout, so the broker never kills it mid-batch.
    assert 0 < settings.PUSH_RUN_SECONDS < settings.Q_TIMEOUT


@pytest.mark.parametrize(("raw", "value"), [("2.5", 2.5), ("30", 30.0), ("", 7.0)])
def test_envfloat_reads_numbers(monkeypatch, raw, value):
    monkeypatch.setenv("PUSH_TEST_FLOAT", raw)
    assert envfloat("PUSH_TEST_FLOAT", 7.0, minimum=0) == value


@pytest.mark.parametrize("raw", ["fast", "nan", "inf", "-1"])
def test_envfloat_fails_loudly_on_bad_values(monkeypatch, raw):
    monkeypatch.setenv("PUSH_TEST_FLOAT", raw)
    with pytest.raises(ImproperlyConfigured, match="PUSH_TEST_FLOAT"):
        envfloat("PUSH_TEST_FLOAT", 7.0, minimum=0)


@pytest.mark.django_db
def test_a_push_is_tuned_from_the_settings_and_keeps_its_tuning(provider_a, settings):
    settings.PUSH_CALL_TIMEOUT = 2.0
    settings.PUSH_RESEND_MARGIN_SECONDS = 1.0
    settings.PUSH_MAX_BATCH_CLAIMS = 3
    tuning = PushTuning.from_settings(provider=provider_a)
    limiter_wait = provider_a.max_concurrency / float(provider_a.rate_limit_per_second)
    assert tuning.timeout == 2.0 and tuning.max_batch_claims == 3
    assert tuning.resend_after == pytest.approx(2 * 2.0 + limiter_wait + 1.0)
    assert PushTuning(**tuning.as_json()) == tuning
