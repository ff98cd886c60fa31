"""Re-encrypt every stored secret (carrier API keys) with the first of FIELD_ENCRYPTION_KEYS.

To change keys: put the new key first and keep the old ones after it, run this command, then drop the old
keys. Each row is rewritten only if it still holds what was read (a key entered meanwhile is kept), and a
row no configured key opens is left as it was and named; the command then exits non-zero.
"""
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from carrieropt import crypto
from carrieropt.fields import EncryptedTextField, Sealed


def encrypted_fields():
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (carrier API keys) with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        problems = crypto.problems()
        if problems:
            raise CommandError(" ".join(problems))
        unreadable = []
        for model, field in encrypted_fields():
            rotated = current = empty = 0
            rows = model._default_manager.order_by("pk").values_list("pk", field.attname)
            for pk, sealed in rows.iterator():
                if not sealed:
                    empty += 1
                    continue
                if crypto.on_first_key(sealed.token):
                    current += 1
                    continue
                try:
                    token = crypto.rotate(sealed.token)
                except crypto.InvalidToken:
                    unreadable.append(f"{model._meta.label} #{pk} {model._default_manager.get(pk=pk)}")
                    continue
                with transaction.atomic():
                    # Compare-and-set: a key entered since the read is newer than ours and stays.
                    rotated += model._default_manager.filter(pk=pk, **{field.attname: sealed}).update(
                        **{field.attname: Sealed(token)})
            self.stdout.write(f"{model._meta.label}.{field.name}: {rotated} re-encrypted with the first key, "
                              f"{current} already on it, {empty} empty")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} stored secret(s) cannot be decrypted with any of {crypto.SETTING} and were left "
                f"as they were: {'; '.join(unreadable)}. Add the key they were encrypted with, or enter them again.")

