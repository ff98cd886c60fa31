"""Scheduled starts: the last 8 days of the cycle, the start hour, in the account's time zone."""
import datetime as dt
import zoneinfo

import pytest

from sessions.models import OptimizationSession, SessionStatus
from sessions.services import session_start
from sessions.windows import schedule_should_start, window_is_open, windows_check
from tests import factories

CHICAGO = zoneinfo.ZoneInfo("America/Chicago")


def local(*args):
    return dt.datetime(*args, tzinfo=CHICAGO)


@pytest.fixture
def provider(tenant_a):
    # Cycle ends on the 30th; optimization may start from 06:00 Chicago time.
    return factories.ServiceProviderFactory(tenant=tenant_a, billing_timezone="America/Chicago",
                                            billing_cycle_end_day=30, optimization_start_hour=6)


@pytest.mark.parametrize(("when", "open_"), [
    (local(2026, 11, 22, 23, 59), False),  # 8 days before the end: not yet
    (local(2026, 11, 23, 5, 59), False),   # in the last 8 days but before the start hour
    (local(2026, 11, 23, 6, 0), True),
    (local(2026, 11, 30, 23, 30), True),   # the end date stays eligible all day
    (local(2026, 12, 1, 12, 0), False),    # a new cycle has begun
])
def test_window(provider, when, open_):
    assert window_is_open(provider=provider, now=when) is open_


def test_window_uses_the_account_time_zone_not_utc(provider):
    # 04:00 UTC on Nov 23 is still 22:00 on Nov 22 in Chicago: outside.
    assert not window_is_open(provider=provider, now=dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC))
    assert window_is_open(provider=provider, now=dt.datetime(2026, 11, 23, 13, 0, tzinfo=dt.UTC))


def test_missing_start_hour_counts_as_midnight(provider):
    provider.optimization_start_hour = 0
    assert window_is_open(provider=provider, now=local(2026, 11, 23, 0, 5))


def test_schedule_starts_once_in_the_window(provider):
    started = windows_check(now=local(2026, 11, 24, 7, 0))
    assert [s.started_by for s in started] == ["schedule"]
    assert [s.provider_id for s in started] == [provider.pk]
    assert windows_check(now=local(2026, 11, 24, 8, 0)) == []  # one is active


def test_completed_period_is_not_rerun_until_the_last_day(provider):
    session = session_start(provider=provider, now=local(2026, 11, 24, 7, 0))
    OptimizationSession.objects.filter(pk=session.pk).update(status=SessionStatus.SUCCEEDED)
    assert schedule_should_start(provider=provider, now=local(2026, 11, 26, 7, 0))[0] is False
    assert schedule_should_start(provider=provider, now=local(2026, 11, 30, 7, 0)) == (True, "last day of the cycle")
    rerun = windows_check(now=local(2026, 11, 30, 7, 0))[0]
    OptimizationSession.objects.filter(pk=rerun.pk).update(status=SessionStatus.SUCCEEDED)
    assert schedule_should_start(provider=provider, now=local(2026, 11, 30, 9, 0))[0] is False


def test_a_failed_run_does_not_block_the_next_hour(provider):
    session = session_start(provider=provider, now=local(2026, 11, 24, 7, 0))
    OptimizationSession.objects.filter(pk=session.pk).update(status=SessionStatus.FAILED)
    assert schedule_should_start(provider=provider, now=local(2026, 11, 24, 8, 0))[0] is True


def test_manual_start_skips_the_window_but_not_the_one_active_rule(provider):
    from sessions.services import SessionAlreadyRunning

    session = session_start(provider=provider, now=local(2026, 11, 5, 3, 0))  # far outside the window
    assert session.status == SessionStatus.PENDING
    with pytest.raises(SessionAlreadyRunning, match="has not been completed"):
        session_start(provider=provider, now=local(2026, 11, 5, 3, 1))


def test_inactive_accounts_are_not_scheduled(provider):
    provider.active = False
    provider.save()
    assert windows_check(now=local(2026, 11, 24, 7, 0)) == []
