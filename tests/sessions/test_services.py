"""Starting sessions: one active per account, decided by the database under concurrency."""
import threading

import pytest
from django.core import mail
from django.db import connection

from sessions.models import OptimizationSession
from sessions.services import ALREADY_RUNNING_SUBJECT, SessionAlreadyRunning, session_start


def test_second_start_is_refused_with_the_legacy_warning_and_email(provider_a):
    first = session_start(provider=provider_a)
    with pytest.raises(SessionAlreadyRunning) as refused:
        session_start(provider=provider_a)
    assert refused.value.http_status == 409
    assert refused.value.extra["active_session"] == str(first.guid)
    assert [m.subject for m in mail.outbox] == [ALREADY_RUNNING_SUBJECT]
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1


def test_start_records_the_zero_percent_event(provider_a):
    session = session_start(provider=provider_a)
    assert list(session.events.values_list("progress", "kind")) == [(0, "Progress")]
    assert session.run.status == "NotStarted"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_starts_make_exactly_one_session(provider_a):
    barrier = threading.Barrier(20)
    outcomes = []

    def start():
        try:
            barrier.wait()
            session_start(provider=provider_a)
            outcomes.append("started")
        except SessionAlreadyRunning:
            outcomes.append("refused")
        except Exception as exc:  # noqa: BLE001 — any other outcome is the failure under test
            outcomes.append(f"error: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 19 + ["started"]
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1
    # 19 refusals of one running session are one incident: one e-mail, the count on the alert.
    assert [m.subject for m in mail.outbox] == [ALREADY_RUNNING_SUBJECT]
    assert provider_a.alerts.get().occurrences == 19
