"""Fixtures of the push tests: test-sized timeouts and carrier simulators (the rest are tests/conftest.py's)."""
import pytest


@pytest.fixture(autouse=True)
def fast_push(settings):
    """Test-sized timeouts and waits (the push stores them, so every worker of it uses the same)."""
    settings.PUSH_CALL_TIMEOUT = 0.25
    settings.PUSH_BACKOFF_BASE = 0.002
    settings.PUSH_BACKOFF_CAP = 0.01
    settings.PUSH_RESEND_MARGIN_SECONDS = 0.2
    settings.PUSH_VERIFY_DELAY_SECONDS = 0.05
    settings.PUSH_LEASE_SECONDS = 2


@pytest.fixture
def simulator(carrier_simulator_factory):
    """start(sims=, seed=, faults=) -> a simulator on 127.0.0.1; all stopped after the test."""
    return carrier_simulator_factory

