"""Carrier API keys encrypted at rest: every stored key is encrypted with the first of FIELD_ENCRYPTION_KEYS.

Reversible while the keys that encrypted the rows are configured: going back decrypts them into the plain
column again (and refuses, naming the account, for a key it cannot decrypt).
"""
from django.db import migrations, models

import carrieropt.fields
from carrieropt import crypto


def encrypt_keys(apps, schema_editor):
    ServiceProvider = apps.get_model("rateplans", "ServiceProvider")
    rows = ServiceProvider.objects.using(schema_editor.connection.alias).values_list("pk", "api_key")
    for pk, plain in rows.iterator():
        if not plain or _is_token(plain):
            continue
        ServiceProvider.objects.using(schema_editor.connection.alias).filter(pk=pk).update(api_key=crypto.encrypt(plain))


def decrypt_keys(apps, schema_editor):
    ServiceProvider = apps.get_model("rateplans", "ServiceProvider")
    rows = ServiceProvider.objects.using(schema_editor.connection.alias).values_list("pk", "name", "api_key")
    for pk, name, token in rows.iterator():
        if not token:
            continue
        try:
            plain = crypto.decrypt(token)
        except crypto.InvalidToken:
            raise RuntimeError(f"carrier account #{pk} {name!r}: its api_key cannot be decrypted with "
                               f"{crypto.SETTING}; configure the key it was encrypted with to go back") from None
        ServiceProvider.objects.using(schema_editor.connection.alias).filter(pk=pk).update(api_key=plain)


def _is_token(value: str) -> bool:
    try:
        crypto.decrypt(value)
    except crypto.InvalidToken:
        return False
    return True


class Migration(migrations.Migration):

    dependencies = [
        ("rateplans", "0003_provider_session_defaults"),
    ]

    operations = [
        # A token is longer than the 300 characters the plain key was allowed.
        migrations.AlterField(
            model_name="serviceprovider", name="api_key", field=models.TextField(max_length=300),
        ),
        migrations.RunPython(encrypt_keys, decrypt_keys, elidable=False),
        migrations.AlterField(
            model_name="serviceprovider", name="api_key",
            field=carrieropt.fields.EncryptedTextField(max_length=300),
        ),
    ]
