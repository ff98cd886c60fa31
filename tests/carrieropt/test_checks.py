"""Settings mistakes become system checks, not crashes at request time."""
from django.test import override_settings

from carrieropt.checks import settings_check


def test_missing_secret_key_without_debug_is_a_system_check_error():
    with override_settings(DEBUG=False, SECRET_KEY=""):
        ids = [e.id for e in settings_check(None)]
    assert "carrieropt.E001" in ids



def test_webhook_url_without_secret_is_a_system_check_error():
    with override_settings(AMOP_WEBHOOK_URL="http://127.0.0.1:9/hook", AMOP_WEBHOOK_SECRET=""):
        ids = [e.id for e in settings_check(None)]
    assert "carrieropt.E004" in ids

