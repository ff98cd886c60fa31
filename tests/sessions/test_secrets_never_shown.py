"""A carrier API key never leaves the database in clear: a whole session against the simulator (sync with the
key, optimize, report, e-mails, AMOP webhooks) and a session whose key the carrier refuses, with everything
they print, log, mail, post and serve captured, holds neither key in any form."""
import base64
import io
import json
import logging
import zipfile

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from carriers.simulator.testing import running_simulator
from devices.testing import simulated_provider
from sessions.models import OptimizationSession
from sessions.services import session_start
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "sk-live-5f1c9e07a2d84b3c"  # what the carrier accepts
REFUSED = "sk-wrong-0b7d61f2e9a3"  # what it refuses


def forms(secret: str, username: str) -> list[str]:
    """The key as text, and as it travels in a Basic authorization header."""
    return [secret, base64.b64encode(f"{username}:{secret}".encode()).decode()]


def texts_of_workbook(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        return "\n".join(book.read(name).decode(errors="replace") for name in book.namelist())


def test_no_key_in_logs_output_mail_webhooks_report_api_or_admin(inline_tasks, tenant_a, api, root_client,
                                                                 caplog, capfd):
    for name in ("", "httpx", "httpcore", "django_q", "carriers", "devices", "sessions"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    captured = []
    with running_simulator(sims=300, seed=5, api_key=KEY) as server, Receiver() as amop, \
            override_settings(AMOP_WEBHOOK_URL=amop.url, AMOP_WEBHOOK_SECRET="amop-test-secret"):
        good = simulated_provider(server=server, tenant=tenant_a, name="Good key", api_key=KEY)
        refused = simulated_provider(server=server, tenant=tenant_a, name="Refused key", api_key=REFUSED)
        ok = OptimizationSession.objects.get(pk=session_start(provider=good).pk)
        failed = OptimizationSession.objects.get(pk=session_start(provider=refused).pk)
    assert ok.status == "succeeded", ok.error
    assert failed.status == "failed" and "refused" in failed.error  # the carrier did say no: the key was sent

    for session in (ok, failed):
        for name in ("session-detail", "session-events"):
            response = api.get(reverse(f"api:{name}", kwargs={"guid": session.guid}))
            assert response.status_code == 200
            captured.append(response.content.decode())
    report = api.get(reverse("api:session-report", kwargs={"guid": ok.guid}))
    assert report.status_code == 200
    captured.append(texts_of_workbook(b"".join(report.streaming_content)))
    for pk in (good.pk, refused.pk):
        captured.append(api.get(reverse("api:provider-detail", kwargs={"pk": pk})).content.decode())
        captured.append(root_client.get(reverse("admin:rateplans_serviceprovider_change", args=[pk])).content.decode())
    captured.append(api.get(reverse("api:provider-list")).content.decode())
    captured.append(root_client.get(reverse("admin:rateplans_serviceprovider_changelist")).content.decode())
    dump = io.StringIO()
    call_command("dumpdata", "rateplans", "devices.syncrun", "optsessions", stdout=dump)
    captured.append(dump.getvalue())

    assert mail.outbox, "the session mailed its report"
    for message in mail.outbox:
        captured += [message.subject, message.body, " ".join(message.to)]
        for _name, content, _mime in message.attachments:
            captured.append(texts_of_workbook(content) if isinstance(content, bytes) else str(content))
    assert amop.requests, "AMOP received the events"
    for request in amop.requests:
        captured += [request["body"].decode(), json.dumps(request["headers"])]
    assert caplog.records, "the session logged"
    captured.append(caplog.text)
    stdout, stderr = capfd.readouterr()
    captured += [stdout, stderr]

    everything = "\n".join(captured)
    for secret in forms(KEY, good.username) + forms(REFUSED, refused.username):
        assert secret not in everything
    assert good.username in everything  # the capture did see what was around the key
