"""FIELD_ENCRYPTION_KEYS: checked at start-up (missing, not Fernet, stored values it cannot open), rotated by
`manage.py rotate_encryption_keys`, and the migration that encrypted the keys already stored (and back)."""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from carrieropt.checks import encryption_keys_check
from carrieropt.crypto import development_key
from rateplans.checks import stored_keys_check
from rateplans.models import ServiceProvider

ROOT = Path(__file__).resolve().parents[2]
OLD_KEY, NEW_KEY, LOST_KEY = (Fernet.generate_key().decode() for _ in range(3))
NOT_A_KEY = "this-is-not-a-fernet-key-but-a-secret"


def stored(pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM rateplans_serviceprovider WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def store(pk, token: str):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE rateplans_serviceprovider SET api_key = %s WHERE id = %s", [token, pk])


def manage(*args, **env):
    environment = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "FIELD_ENCRYPTION_KEYS"}}
    environment.update({"SECRET_KEY": "x" * 50, "CARRIEROPT_VAR_DIR": "/tmp/carrieropt-check-var", **env})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


def test_without_debug_a_missing_key_stops_the_start():
    result = manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "carrieropt.E101" in result.stderr and "FIELD_ENCRYPTION_KEYS is empty while DEBUG is off" in result.stderr


def test_a_key_that_is_not_fernet_stops_the_start_without_showing_it():
    result = manage("check", DEBUG="0", FIELD_ENCRYPTION_KEYS=f"{OLD_KEY},{NOT_A_KEY}")
    assert result.returncode != 0
    assert "key 2 of 2 is not a Fernet key" in result.stderr
    assert NOT_A_KEY not in result.stderr + result.stdout and OLD_KEY not in result.stderr + result.stdout


def test_without_debug_a_listed_key_passes_and_the_development_key_is_never_used():
    dev_token = Fernet(development_key("x" * 50)).encrypt(b"sk-dev").decode()
    script = ("from carrieropt import crypto\n"
              "print('token', crypto.encrypt('sk-prod'))\n"
              "try:\n"
              f"    crypto.decrypt({dev_token!r}); print('development key used')\n"
              "except crypto.InvalidToken:\n"
              "    print('development key refused')\n")
    result = manage("shell", "-c", script, DEBUG="0", FIELD_ENCRYPTION_KEYS=OLD_KEY)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    token = next(line for line in lines if line.startswith("token ")).split()[1]
    assert Fernet(OLD_KEY).decrypt(token.encode()) == b"sk-prod"
    assert "development key refused" in lines
    assert manage("check", DEBUG="0", FIELD_ENCRYPTION_KEYS=OLD_KEY).returncode == 0


@override_settings(FIELD_ENCRYPTION_KEYS=[], FIELD_ENCRYPTION_DEVELOPMENT_KEY=True)
def test_with_debug_the_development_key_serves_when_none_is_listed():
    assert encryption_keys_check(None) == []


@pytest.mark.django_db
def test_a_stored_key_no_configured_key_opens_is_a_check_error_naming_the_account(provider_a, provider_b):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY], FIELD_ENCRYPTION_DEVELOPMENT_KEY=False):
        ServiceProvider.objects.filter(pk=provider_a.pk).update(api_key="sk-alice-very-secret")
        ServiceProvider.objects.filter(pk=provider_b.pk).update(api_key="sk-bob-very-secret")
        assert stored_keys_check(None) == []
        store(provider_b.pk, Fernet(LOST_KEY).encrypt(b"sk-bob-very-secret").decode())
        errors = stored_keys_check(None)
    assert [e.id for e in errors] == ["rateplans.E101"]
    assert f"Carrier account #{provider_b.pk} 'Bob POD19' (tenant 'Bob Metering')" in errors[0].msg
    assert "sk-bob" not in errors[0].msg + errors[0].hint


@pytest.mark.django_db
def test_rotation_reencrypts_every_row_with_the_first_key(provider_a, provider_b):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        for provider in (provider_a, provider_b):
            ServiceProvider.objects.filter(pk=provider.pk).update(api_key=f"sk-{provider.pk}")
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        out = io_call("rotate_encryption_keys")
        assert "rateplans.ServiceProvider.api_key: 2 re-encrypted with the first key, 0 already on it" in out
        again = io_call("rotate_encryption_keys")
        assert "0 re-encrypted with the first key, 2 already on it" in again
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY], FIELD_ENCRYPTION_DEVELOPMENT_KEY=False):
        for provider in (provider_a, provider_b):
            assert Fernet(NEW_KEY).decrypt(stored(provider.pk).encode()) == f"sk-{provider.pk}".encode()
            assert ServiceProvider.objects.get(pk=provider.pk).api_key == f"sk-{provider.pk}"


@pytest.mark.django_db
def test_rotation_leaves_a_row_it_cannot_open_and_says_which(provider_a, provider_b):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY], FIELD_ENCRYPTION_DEVELOPMENT_KEY=False):
        ServiceProvider.objects.filter(pk=provider_a.pk).update(api_key="sk-alice")
    lost = Fernet(LOST_KEY).encrypt(b"sk-bob").decode()
    store(provider_b.pk, lost)
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY], FIELD_ENCRYPTION_DEVELOPMENT_KEY=False), \
            pytest.raises(CommandError) as exc:
        io_call("rotate_encryption_keys")
    assert f"rateplans.ServiceProvider #{provider_b.pk} Bob POD19" in str(exc.value)
    assert stored(provider_b.pk) == lost
    assert Fernet(NEW_KEY).decrypt(stored(provider_a.pk).encode()) == b"sk-alice"


def io_call(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_the_stored_keys_and_back(tenant_a):
    executor = MigrationExecutor(connection)
    before, after = [("rateplans", "0003_provider_session_defaults")], [("rateplans", "0004_encrypt_api_key")]
    try:
        executor.migrate(before)
        Plain = MigrationExecutor(connection).loader.project_state(before).apps.get_model("rateplans", "ServiceProvider")
        Plain.objects.create(tenant_id=tenant_a.pk, name="Old", api_base_url="https://rws.example.com", username="u",
                             api_key="sk-stored-in-plain")
        pk = Plain.objects.values_list("pk", flat=True).get(name="Old")
        with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
            MigrationExecutor(connection).migrate(after)
            assert Fernet(OLD_KEY).decrypt(stored(pk).encode()) == b"sk-stored-in-plain"
            # The model as of that migration (later ones add columns the table does not have yet).
            Encrypted = MigrationExecutor(connection).loader.project_state(after).apps.get_model(
                "rateplans", "ServiceProvider")
            assert Encrypted.objects.get(pk=pk).api_key == "sk-stored-in-plain"
            MigrationExecutor(connection).migrate(before)
            assert stored(pk) == "sk-stored-in-plain"
    finally:
        with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
            MigrationExecutor(connection).loader.build_graph()
            executor = MigrationExecutor(connection)
            executor.migrate(executor.loader.graph.leaf_nodes())
