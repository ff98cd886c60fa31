"""A model field for secrets: encrypted in the database (carrieropt.crypto), decrypted only when code reads it.

The row keeps what the database holds (a `Sealed` token) until the attribute is read, so loading, listing,
validating or saving a row never needs the key, and a row whose key cannot be decrypted is named when, and
only when, its secret is needed. Equality lookups on the field cannot match (each encryption differs).
"""
from __future__ import annotations

from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from carrieropt import crypto
from carrieropt.errors import ApplicationError


class Sealed:
    """A secret as stored: a Fernet token. Shows nothing of the secret, not even its length."""

    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token

    def __bool__(self) -> bool:
        return bool(self.token)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __repr__(self) -> str:
        return "<encrypted>"

    __str__ = __repr__


class SecretUnreadable(ApplicationError):
    """A stored secret that none of FIELD_ENCRYPTION_KEYS opens: says which row and what to do, never the key."""

    code = "secret_unreadable"
    http_status = 409


def describe(instance) -> str:
    return f"{instance._meta.verbose_name} #{instance.pk} {str(instance)!r}"


def unreadable_message(instance, field_name: str) -> str:
    return (f"{describe(instance)}: its stored {field_name} cannot be decrypted with any of "
            f"{crypto.SETTING} (encrypted with a key no longer listed?). Put that key back in {crypto.SETTING} "
            f"or enter the {field_name} again.")


def sealed_value(instance, field_name: str):
    """What the row holds without decrypting it: a Sealed token as loaded, or the text assigned since."""
    return instance.__dict__.get(instance._meta.get_field(field_name).attname)


class _SecretAttribute(DeferredAttribute):
    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)  # loads a deferred column
        if not isinstance(value, Sealed):
            return value
        if not value.token:
            return ""
        try:
            return crypto.decrypt(value.token)
        except crypto.InvalidToken:
            raise SecretUnreadable(unreadable_message(instance, self.field.name), field=self.field.name) from None

    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """Text encrypted at rest; `max_length` and validators apply to the plaintext when it is assigned."""

    descriptor_class = _SecretAttribute

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.max_length is not None:  # TextField alone does not enforce it
            self.validators.append(MaxLengthValidator(self.max_length))

    def from_db_value(self, value, expression, connection):
        return None if value is None else Sealed(value)

    def to_python(self, value):
        if value is None or isinstance(value, Sealed):
            return value
        return str(value)

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.token  # unchanged: written back as it was read
        value = str(value)
        return crypto.encrypt(value) if value else ""

    def pre_save(self, model_instance, add):
        return model_instance.__dict__.get(self.attname)  # saving a row never decrypts its secret

    def value_from_object(self, obj):
        return obj.__dict__.get(self.attname)  # forms' initial data and serializers get the sealed form

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        return value.token if isinstance(value, Sealed) else ""


class SecretFieldsMixin:
    """Model mixin: full_clean leaves a secret that is still the stored one alone (it was validated when
    entered, and validating it again would need to decrypt it)."""

    def full_clean(self, exclude=None, validate_unique=True, validate_constraints=True):
        exclude = set(exclude or ())
        for field in self._meta.concrete_fields:
            if isinstance(field, EncryptedTextField) and isinstance(self.__dict__.get(field.attname), Sealed):
                exclude.add(field.name)
        return super().full_clean(exclude=exclude, validate_unique=validate_unique,
                                  validate_constraints=validate_constraints)
