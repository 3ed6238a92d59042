"""Encryption at rest for secret values, with Fernet.

SECRETS_KEYS holds one or more Fernet keys, newest first: the first encrypts, all of
them decrypt, so a key can be rotated without losing anything.
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


def key_derived_from_secret_key():
    """The development default: a Fernet key derived from SECRET_KEY."""
    digest = hashlib.sha256(("valtown-secrets:" + settings.SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


@cache
def _fernet():
    keys = settings.SECRETS_KEYS or [key_derived_from_secret_key()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext):
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token):
    return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
