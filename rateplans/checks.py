"""System check: every stored carrier API key can be decrypted with FIELD_ENCRYPTION_KEYS, at start-up,
naming the accounts that cannot (instead of a failure at their first sync)."""
from __future__ import annotations

from django.core.checks import Error, register
from django.db import DatabaseError, connection
from django.db.migrations.recorder import MigrationRecorder

from carrieropt import crypto

ENCRYPTING_MIGRATION = ("rateplans", "0004_encrypt_api_key")


@register()
def stored_keys_check(app_configs, **kwargs):
    from rateplans.models import ServiceProvider

    if crypto.problems():
        return []  # carrieropt.E101 already says what is wrong with the keys
    try:
        if ENCRYPTING_MIGRATION not in MigrationRecorder(connection).applied_migrations():
            return []  # not migrated yet: the keys are still plain text and `migrate` will encrypt them
        rows = list(ServiceProvider.objects.order_by("pk").values_list("pk", "name", "tenant__name", "api_key"))
    except DatabaseError:
        return []  # no database to look at (yet): nothing stored to check
    problems = []
    for pk, name, tenant, sealed in rows:
        if not sealed:
            continue
        try:
            crypto.decrypt(sealed.token)
        except crypto.InvalidToken:
            problems.append(Error(
                f"Carrier account #{pk} {name!r} (tenant {tenant!r}): its stored API key cannot be decrypted "
                f"with any of FIELD_ENCRYPTION_KEYS; its syncs and pushes would fail.",
                hint="Add the key it was encrypted with to FIELD_ENCRYPTION_KEYS (then run "
                     "`manage.py rotate_encryption_keys`), or enter the account's API key again.",
                obj=f"rateplans.ServiceProvider #{pk}", id="rateplans.E101"))
    return problems

