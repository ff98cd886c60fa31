"""Encryption of secrets stored in the database (carrier API keys): Fernet keys from FIELD_ENCRYPTION_KEYS.

The first key encrypts, every key decrypts (MultiFernet), so a new key is put first and the old one kept
until `manage.py rotate_encryption_keys` has re-encrypted every row. When the process started with DEBUG on
(settings.FIELD_ENCRYPTION_DEVELOPMENT_KEY), a development key derived from SECRET_KEY is added last (and is
the only one when none is listed); with DEBUG off it never is.
"""
from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTING = "FIELD_ENCRYPTION_KEYS"
GENERATE_HINT = ("Generate one with: python -c 'from cryptography.fernet import Fernet; "
                 "print(Fernet.generate_key().decode())'")


class KeyProblem(ImproperlyConfigured):
    """FIELD_ENCRYPTION_KEYS is missing or holds something that is not a Fernet key (the key is never quoted)."""


def development_key(secret_key: str) -> bytes:
    """The DEBUG-only key: derived from SECRET_KEY, so every process of one development setup agrees."""
    digest = hashlib.sha256(b"carrieropt field encryption (DEBUG only)\0" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def key_problems(keys, *, development: bool) -> list[str]:
    """What is wrong with the configured keys, in words that never include a key."""
    if not keys and not development:
        return [f"{SETTING} is empty while DEBUG is off: stored carrier API keys can be neither encrypted "
                f"nor read. {GENERATE_HINT}"]
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            problems.append(f"{SETTING}: key {position} of {len(keys)} is not a Fernet key "
                            f"(44 characters of url-safe base64 encoding 32 bytes). {GENERATE_HINT}")
    return problems


@functools.lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...], development: bool, secret_key: str) -> tuple[MultiFernet, Fernet]:
    problems = key_problems(keys, development=development)
    if problems:
        raise KeyProblem(" ".join(problems))
    fernets = [Fernet(k) for k in keys]
    if development:
        fernets.append(Fernet(development_key(secret_key)))
    return MultiFernet(fernets), fernets[0]


def _token(token: str) -> bytes:
    try:
        return token.encode("ascii")
    except UnicodeEncodeError:  # not something Fernet wrote
        raise InvalidToken from None


def _configured() -> tuple[MultiFernet, Fernet]:
    return _fernets(*configured_keys())


def configured_keys() -> tuple[tuple[str, ...], bool, str]:
    """(FIELD_ENCRYPTION_KEYS, whether the development key is added, SECRET_KEY it derives from)."""
    return (tuple(settings.FIELD_ENCRYPTION_KEYS), bool(settings.FIELD_ENCRYPTION_DEVELOPMENT_KEY),
            settings.SECRET_KEY)


def problems() -> list[str]:
    """What is wrong with the configured keys (empty when they can encrypt and decrypt)."""
    keys, development, _ = configured_keys()
    return key_problems(keys, development=development)


def encrypt(plaintext: str) -> str:
    return _configured()[0].encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of a token; InvalidToken when no configured key opens it."""
    return _configured()[0].decrypt(_token(token)).decode()


def on_first_key(token: str) -> bool:
    """Whether the token is already encrypted with the first (encrypting) key."""
    try:
        _configured()[1].decrypt(_token(token))
    except InvalidToken:
        return False
    return True


def rotate(token: str) -> str:
    """The same plaintext encrypted with the first key; InvalidToken when no configured key opens it."""
    return _configured()[0].rotate(_token(token)).decode("ascii")


__all__ = ["InvalidToken", "KeyProblem", "decrypt", "development_key", "encrypt", "key_problems", "on_first_key",
           "rotate"]
