import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from accounts.secrets.crypto import decrypt, encrypt

SECRET_NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")
MAX_VALUE_BYTES = 32 * 1024
MAX_SECRETS_PER_USER = 100
# Values shorter than this are not redacted from logs: masking every "1" or "ab"
# would make logs unreadable, and such values protect nothing.
MIN_REDACTED_LENGTH = 4
REDACTED = "****"


def validate_secret_name(name):
    if not SECRET_NAME_PATTERN.match(name or "") or len(name) > 128:
        raise ValidationError(
            "A secret's name uses capital letters, digits and underscores, and does not start with a digit (like API_KEY).",
            code="invalid",
        )


def validate_secret_value(value):
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ValidationError(f"A secret's value is at most {MAX_VALUE_BYTES // 1024} KB.", code="too_large")


class SecretQuerySet(models.QuerySet):
    def environment(self):
        """Name → plaintext value, for handing to an evaluation."""
        return {secret.name: secret.value for secret in self}


class Secret(models.Model):
    """One environment variable of a user, encrypted at rest and never shown again."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=128, validators=[validate_secret_name])
    encrypted_value = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SecretQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint("owner", "name", name="secret_name_unique_per_owner")]

    def __str__(self):
        return f"{self.owner}: {self.name}"

    @property
    def value(self):
        return decrypt(self.encrypted_value)

    @classmethod
    def put(cls, owner, name, value):
        """Create or replace owner's secret `name`."""
        validate_secret_name(name)
        validate_secret_value(value)
        existing = cls.objects.filter(owner=owner, name=name).first()
        if existing is None and cls.objects.filter(owner=owner).count() >= MAX_SECRETS_PER_USER:
            raise ValidationError(f"You can have at most {MAX_SECRETS_PER_USER} secrets. Delete one first.")
        secret = existing or cls(owner=owner, name=name)
        secret.encrypted_value = encrypt(value)
        secret.save()
        return secret


class Redactor:
    """Replaces secret values with **** in text and in JSON-like values."""

    def __init__(self, values):
        self.values = sorted({v for v in values if len(v) >= MIN_REDACTED_LENGTH}, key=len, reverse=True)

    def text(self, text):
        if not self.values or not isinstance(text, str):
            return text
        for value in self.values:
            text = text.replace(value, REDACTED)
        return text

    def value(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.text(key): self.value(item) for key, item in value.items()}
        return value
