"""Reports go through Django's storage API (STORAGES["reports"]): with an S3-compatible bucket (moto's server on
loopback) a worker writes the report there and a web process with another MEDIA_ROOT, sharing no disk with it,
serves the download from there."""
from pathlib import Path

import pytest
from django.core import mail
from django.test import override_settings
from django.urls import reverse

from carrieropt.checks import reports_storage_check
from sessions.models import ACTIVE_STATUSES, OptimizationSession
from sessions.services import session_start
from tests.qcluster import qcluster, wait_for
from tests.report_storage import s3_server


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def s3():
    with s3_server() as server:
        yield server


def assert_served_from_the_bucket(session, s3, api, alice_client, web_media: Path) -> bytes:
    name = f"device_assignments_{session.guid}.xlsx"
    assert session.report_path == name
    assert s3.keys() == [f"reports/{name}"]
    stored = s3.client().get_object(Bucket=s3.bucket, Key=f"reports/{name}")["Body"].read()
    assert stored[:2] == b"PK"
    response = api.get(reverse("api:session-report", kwargs={"guid": session.guid}))
    assert response.status_code == 200
    assert f'filename="{name}"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == stored
    page = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    assert 'id="report-link"' in page
    assert files_under(web_media) == []
    return stored


@pytest.mark.django_db(transaction=True)
@pytest.mark.demo(devices=80, seed=3)
def test_the_report_is_written_to_the_bucket_and_served_from_it(inline_tasks, demo, s3, settings, tmp_path, alice,
                                                                api, alice_client):
    demo.tenant.users.add(alice)
    worker_media, web_media = tmp_path / "worker", tmp_path / "web"
    settings.MEDIA_ROOT = worker_media
    settings.STORAGES = {**settings.STORAGES, "reports": s3.storage()}
    session = OptimizationSession.objects.get(pk=session_start(provider=demo.provider, sync_devices=False).pk)
    # (The demo fleet has a few SIMs whose usage the carrier never gives: warnings, and a report all the same.)
    assert session.status in ("succeeded", "succeeded_with_warnings"), session.error
    assert files_under(worker_media) == []

    settings.MEDIA_ROOT = web_media  # the web machine: another disk
    stored = assert_served_from_the_bucket(session, s3, api, alice_client, web_media)
    (message,) = [m for m in mail.outbox if m.attachments]
    assert message.attachments[0][1] == stored, "the e-mail carries the stored report"


@pytest.mark.postgres  # the worker process shares the test database
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.demo(devices=300, seed=9)
def test_a_worker_with_its_own_disk_writes_the_report_the_web_serves(demo, s3, settings, tmp_path, alice, api,
                                                                     alice_client):
    """qcluster with MEDIA_ROOT=worker/ and the bucket from its environment (REPORTS_S3_*); this process is the
    web tier with MEDIA_ROOT=web/."""
    demo.tenant.users.add(alice)
    worker_media, web_media = tmp_path / "worker", tmp_path / "web"
    settings.MEDIA_ROOT = web_media
    settings.STORAGES = {**settings.STORAGES, "reports": s3.storage()}
    env = {"MEDIA_ROOT": str(worker_media), "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
           **s3.env()}
    with qcluster(workers=2, env=env, log_path=tmp_path / "cluster.log") as cluster:
        session = session_start(provider=demo.provider, sync_devices=False)
        wait_for(lambda: OptimizationSession.objects.get(pk=session.pk).status not in ACTIVE_STATUSES,
                 timeout=180, what="the session to end", clusters=[cluster])
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status == "succeeded", session.error
    assert files_under(worker_media) == [], "the worker kept nothing on its own disk"
    assert_served_from_the_bucket(session, s3, api, alice_client, web_media)


def test_object_storage_settings_without_a_bucket_or_with_half_a_key_are_check_errors():
    with override_settings(REPORTS_S3_BUCKET="", REPORTS_S3_ENDPOINT_URL="http://127.0.0.1:9000"):
        errors = reports_storage_check(None)
    assert [e.id for e in errors] == ["carrieropt.E111"] and "REPORTS_S3_ENDPOINT_URL" in errors[0].msg
    with override_settings(REPORTS_S3_BUCKET="reports", REPORTS_S3_ACCESS_KEY_ID="AKIA", REPORTS_S3_SECRET_ACCESS_KEY=""):
        errors = reports_storage_check(None)
    assert [e.id for e in errors] == ["carrieropt.E112"]
    with override_settings(REPORTS_S3_BUCKET="reports", REPORTS_S3_ACCESS_KEY_ID="AKIA",
                           REPORTS_S3_SECRET_ACCESS_KEY="s3cr3t", REPORTS_S3_ENDPOINT_URL="http://127.0.0.1:9000"):
        assert reports_storage_check(None) == []


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_old_report_paths_into_storage_names_and_back(completed_session, provider_a, settings,
                                                                          tmp_path):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    settings.MEDIA_ROOT = tmp_path
    session = completed_session(provider=provider_a, groups=1, sims_per_group=2)
    other = tmp_path.parent / "elsewhere.xlsx"
    before, after = [("optsessions", "0008_session_started_cancelled_by")], [("optsessions", "0009_report_storage_names")]
    try:
        MigrationExecutor(connection).migrate(before)
        OptimizationSession.objects.filter(pk=session.pk).update(report_path=str(tmp_path / "reports" / "a.xlsx"))
        twin = OptimizationSession.objects.filter(pk=session.pk)
        MigrationExecutor(connection).migrate(after)
        assert twin.values_list("report_path", flat=True).get() == "a.xlsx"
        MigrationExecutor(connection).migrate(before)
        assert twin.values_list("report_path", flat=True).get() == str(tmp_path / "reports" / "a.xlsx")
        twin.update(report_path=str(other))
        MigrationExecutor(connection).migrate(after)
        assert twin.values_list("report_path", flat=True).get() == str(other), "a path outside the old folder is kept (and never served)"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
