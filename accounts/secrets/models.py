import base64
import binascii
import re

from ahocorasick_rs import BytesAhoCorasick, Implementation, MatchKind
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from accounts.secrets.crypto import decrypt, encrypt
from accounts.secrets.escapes import needs_escaping, once_printed_forms, printed_parts, twice_printed_forms
from runtime import DENIED_ENV

SECRET_NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")
MAX_VALUE_BYTES = 32 * 1024
MAX_SECRETS_PER_USER = 100
# Values shorter than this are not redacted from logs: masking every "1" or "ab"
# would make logs unreadable, and such values protect nothing.
MIN_REDACTED_LENGTH = 4
REDACTED = "****"
# How many bytes of the Redactor's automaton may be escaped forms of the values, beyond
# the values themselves (each costs about 40 bytes of memory, and more time to build
# when it is a prefix of a value, as the part Deno shows of a long one is): every form
# of 30 RSA-4096 PEM keys fits.
ESCAPED_FORMS_BUDGET_BYTES = 256 * 1024


def validate_secret_name(name):
    if not SECRET_NAME_PATTERN.match(name or "") or len(name) > 128:
        raise ValidationError(
            "A secret's name uses capital letters, digits and underscores, and does not start with a digit (like API_KEY).",
            code="invalid",
        )
    if name in DENIED_ENV:
        raise ValidationError(
            f"{name} can't be a secret's name: Deno would send your vals' connections through the proxy it "
            "names, and vals may not set a proxy.",
            code="reserved",
        )


def validate_secret_value(value):
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ValidationError(f"A secret's value is at most {MAX_VALUE_BYTES // 1024} KB.", code="too_large")


class SecretQuerySet(models.QuerySet):
    def environment(self):
        """Name → plaintext value, for handing to an evaluation. A secret saved under a
        proxy variable's name before those were refused is left out: the runtime would
        refuse every evaluation with it, and a val that reads it gets Deno's permission
        error instead, where it does."""
        return {secret.name: secret.value for secret in self if secret.name not in DENIED_ENV}


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
    """Replaces secret values with **** in text and in JSON-like values: each value as it
    is and in every form a val's output can escape it to (accounts/secrets/escapes.py),
    and inside the bytes of a base64 response body.

    All the forms are searched for at once with an Aho-Corasick automaton, leftmost
    longest first: one pass, linear in the text whatever the secrets are. A regular
    expression alternation of the forms backtracks: it tries every form afresh at every
    position, so a log repeating the start of a long self-similar secret costs it the
    text's length times the secret's (3e10 steps for 32 KB in 1 MB)."""

    def __init__(self, values):
        self.values = sorted({v for v in values if len(v) >= MIN_REDACTED_LENGTH}, key=len, reverse=True)
        parts = sorted({part for value in self.values for part in printed_parts(value)}, key=len)
        # UTF-8 bytes, so that one automaton serves text and binary bodies alike; a
        # match of whole characters starts and ends on a character boundary.
        patterns = {part.encode("utf-8") for part in parts}
        budget = ESCAPED_FORMS_BUDGET_BYTES
        # The automaton costs memory and time in proportion to what it searches for. The
        # secrets themselves are always in it; their escaped forms within a budget, once
        # printed before twice printed, the shortest secrets' first, until one doesn't
        # fit: a user whose secrets are megabytes of quotes and newlines can't make every
        # run spend seconds and a gigabyte on them, and still has every short secret (an
        # API key) masked in every form.
        for printed_forms in (once_printed_forms, twice_printed_forms):
            for part in parts:
                if not needs_escaping(part):
                    continue  # printed as it is
                encoded = {form.encode("utf-8") for form in printed_forms(part)} - patterns
                size = sum(map(len, encoded))
                if size > budget:
                    break
                patterns |= encoded
                budget -= size
        self._matcher = None
        if patterns:
            # The noncontiguous NFA builds fastest and smallest; left to choose, the
            # library builds a DFA, many times the memory and time for megabytes.
            self._matcher = BytesAhoCorasick(
                sorted(patterns), matchkind=MatchKind.LeftmostLongest, implementation=Implementation.NoncontiguousNFA
            )

    def binary(self, data):
        """data with every form of every secret replaced, as bytes."""
        if self._matcher is None:
            return data
        matches = self._matcher.find_matches_as_indexes(data)
        if not matches:
            return data
        kept, end = [], 0
        for _, start, stop in matches:
            kept.append(data[end:start])
            end = stop
        kept.append(data[end:])
        return REDACTED.encode().join(kept)

    def text(self, text):
        if self._matcher is None or not isinstance(text, str):
            return text
        # surrogatepass: a val's text can hold lone surrogates, which no secret does.
        data = text.encode("utf-8", "surrogatepass")
        redacted = self.binary(data)
        return text if redacted is data else redacted.decode("utf-8", "surrogatepass")

    def base64_body(self, encoded):
        """A base64 body with the secrets redacted from the bytes it stands for: base64
        spells the same bytes three ways over, by their offset, and each way's ends
        depend on the bytes around, so it is decoded, redacted and encoded again. Not
        base64 after all: redacted as text."""
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return self.text(encoded)
        redacted = self.binary(data)
        return encoded if redacted is data else base64.b64encode(redacted).decode("ascii")

    def value(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            redacted = {self.text(key): self.value(item) for key, item in value.items()}
            # A Response's body that isn't UTF-8 is kept as base64 (runtime/result.py).
            if value.get("body_encoding") == "base64" and isinstance(value.get("body"), str):
                redacted["body"] = self.base64_body(value["body"])
            return redacted
        return value
