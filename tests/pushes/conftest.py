"""Fixtures of the push tests: test-sized timeouts, tasks run inline, carrier simulators, an API client."""
import pytest

from carriers.simulator.testing import running_simulator
from tests.factories_results import token_for


@pytest.fixture(autouse=True)
def fast_push(settings):
    """Test-sized timeouts and waits (the push stores them, so every worker of it uses the same)."""
    settings.PUSH_CALL_TIMEOUT = 0.25
    settings.PUSH_BACKOFF_BASE = 0.002
    settings.PUSH_BACKOFF_CAP = 0.01
    settings.PUSH_RESEND_MARGIN_SECONDS = 0.2
    settings.PUSH_VERIFY_DELAY_SECONDS = 0.05
    settings.PUSH_LEASE_SECONDS = 2
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def inline_tasks(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def simulator():
    """start(sims=, seed=, faults=) -> a simulator on 127.0.0.1; all stopped after the test."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(running_simulator(**kwargs))


@pytest.fixture
def api(client, alice, tenant_a):
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token_for(alice)}"
    return client
