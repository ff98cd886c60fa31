"""manage.py apply_recommendations: the command sends the push itself and shows progress."""
import io

import pytest
from django.core.management import call_command

from pushes.models import RatePlanPush
from tests.pushes.helpers import api_changes, completed_session, fleet

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


def test_command_sends_the_push_itself_and_prints_progress_and_summary(simulator, monkeypatch):
    from django_q.conf import Conf

    server = simulator(sims=300, seed=29)
    provider = fleet(server, devices=300, seed=29)
    monkeypatch.setattr(Conf, "SYNC", True)
    session = completed_session(provider)
    monkeypatch.setattr(Conf, "SYNC", False)
    out = io.StringIO()
    # No worker runs: the command claims the batches and the verification itself.
    call_command("apply_recommendations", "--session", str(session.pk), stdout=out)
    push = RatePlanPush.objects.get(session=session)
    text = out.getvalue()
    assert push.status == "succeeded" and push.trigger == "command" and push.applied_by.startswith("command")
    assert f"Rate plan update #{push.pk} succeeded: {push.applied:,} applied" in text
    assert "settled" in text  # counted lines when not on a terminal
    assert len(api_changes(server)) == push.total

    with pytest.raises(Exception, match="no optimization session"):
        call_command("apply_recommendations", "--session", "999999", stdout=io.StringIO())
