"""std/blob: each user's key-value store, for their vals.

Values are files in Django's "blobs" storage (STORAGES["blobs"]: a folder by default,
S3 or similar by configuration), named `<owner's primary key>/<random hex>`. A key is
never part of a path, so no key ("../2/x", "/etc/passwd", NUL, 10,000 characters) can
reach outside its owner's folder, and whose folder it is comes from the evaluation's
principal, never from anything the val sends. A Blob row per key holds what listing
and the quota need.

The quota: a write takes the owner's lock (select_for_update on their user row, on
PostgreSQL; SQLite's transactions take the database's write lock as they begin, see
transaction_mode IMMEDIATE in settings), then sums the owner's sizes, writes the file
and the row, and commits. Two writes for one user are checked one after the other, so
they can't overshoot the quota together; writes of different users don't wait for each
other. A refused write writes nothing. An overwritten or deleted value's file is
removed once the change is committed, so a failed write never loses the old value.

Values are bytes. A string is stored as UTF-8 and remembered as text, so `get` gives
back the kind it was given. Over the host call they travel as base64, which makes them
4/3 larger: BLOB_MAX_VALUE_BYTES must stay below 3/4 of the runtime's host-call cap
(RUNTIME_MAX_HOST_CALL_BYTES, 1 MB of JSON by default), with room for the key.
"""

import base64
import binascii
import json
import logging
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import models, transaction
from django.db.models import Count, Sum
from django.db.models.functions import Left
from django.db.models.signals import post_delete
from django.dispatch import receiver

logger = logging.getLogger(__name__)

# A page of list() results stays well under the host call's reply cap, however the keys
# are escaped in JSON.
LIST_PAGE_BYTES = 256 * 1024
LIST_PAGE_ROWS = 1000


class BlobError(Exception):
    """Refused, with a message the val sees as its Error."""


def blob_storage():
    """Looked up on every use, so that a change of STORAGES (tests) takes effect."""
    return storages["blobs"]


def _size(num_bytes):
    from vals.models import human_size  # vals.models imports this module

    return human_size(num_bytes)


def validate_key(key, *, what="key", allow_empty=False):
    if not isinstance(key, str) or (not key and not allow_empty):
        raise BlobError(f"{what} must be a non-empty string" if not allow_empty else f"{what} must be a string")
    limit = settings.BLOB_MAX_KEY_LENGTH
    if len(key) > limit:
        raise BlobError(f"{what} too long: {len(key):,} characters, at most {limit:,}")
    if "\x00" in key:
        raise BlobError(f"{what} cannot contain NUL characters")
    return key


class BlobQuerySet(models.QuerySet):
    def usage(self):
        return self.aggregate(total=Sum("size"))["total"] or 0

    def with_prefix(self, prefix):
        # Left() compares exactly on both databases, where SQLite's LIKE ignores case.
        if not prefix:
            return self
        return self.annotate(head=Left("key", len(prefix))).filter(head=prefix)


class Blob(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blobs")
    # A text column: its length is BLOB_MAX_KEY_LENGTH's to decide. Keep that under about
    # 600 on PostgreSQL, whose unique index takes entries of at most 2,704 bytes.
    key = models.TextField()
    size = models.PositiveBigIntegerField()
    is_text = models.BooleanField(default=False)
    # Where the value is in blob_storage().
    path = models.CharField(max_length=200)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BlobQuerySet.as_manager()

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="one_blob_per_key")]

    def __str__(self):
        return f"{self.owner_id}:{self.key}"

    def read(self):
        with blob_storage().open(self.path, "rb") as stored:
            return stored.read()

    def summary(self):
        return {"key": self.key, "size": self.size, "updatedAt": self.updated_at.isoformat()}


@receiver(post_delete, sender=Blob)
def _remove_file_of_deleted_blob(sender, instance, **kwargs):
    """However a Blob goes (a val, the settings page, its owner's account), its file goes after it."""
    transaction.on_commit(lambda: _remove_file(instance.path))


def _remove_file(path):
    try:
        blob_storage().delete(path)
    except Exception:
        logger.exception("Could not remove blob file %s", path)


def _lock_owner(owner):
    from django.contrib.auth import get_user_model

    # NO KEY: rows that merely refer to the user (a new evaluation) need not wait.
    list(get_user_model().objects.select_for_update(no_key=True).filter(pk=owner.pk).values_list("pk"))


class BlobStore:
    """One user's store. Everything a val does with std/blob goes through here."""

    def __init__(self, owner):
        self.owner = owner

    @property
    def blobs(self):
        return Blob.objects.filter(owner=self.owner)

    def usage(self):
        return self.blobs.usage()

    def find(self, key):
        return self.blobs.filter(key=validate_key(key)).first()

    def get(self, key):
        """(data, is_text), or None if there is no such key."""
        blob = self.find(key)
        if blob is None:
            return None
        try:
            return blob.read(), blob.is_text
        except Exception:
            logger.exception("Could not read blob %s", blob.pk)
            raise BlobError(f"blob {key!r} could not be read from storage; try again later") from None

    def set(self, key, data, *, is_text=False):
        validate_key(key)
        limit = settings.BLOB_MAX_VALUE_BYTES
        if len(data) > limit:
            raise BlobError(f"blob value too large: {len(data):,} bytes, at most {limit:,}")
        path = None
        try:
            with transaction.atomic():
                _lock_owner(self.owner)
                existing = self.blobs.filter(key=key).first()
                self._check_quota(existing, len(data))
                path = self._write(data)
                if existing is None:
                    blob = Blob.objects.create(owner=self.owner, key=key, size=len(data), is_text=is_text, path=path)
                else:
                    old_path = existing.path
                    existing.size, existing.is_text, existing.path = len(data), is_text, path
                    existing.save(update_fields=["size", "is_text", "path", "updated_at"])
                    transaction.on_commit(lambda: _remove_file(old_path))
                    blob = existing
        except Exception:
            if path is not None:
                _remove_file(path)
            raise
        return blob

    def delete(self, key):
        """Whether there was such a key."""
        deleted, _ = self.blobs.filter(key=validate_key(key)).delete()
        return deleted > 0

    def list(self, prefix="", after=None):
        """A page of (blob summaries, the key to continue after or None), in key order."""
        validate_key(prefix, what="prefix", allow_empty=True)
        rows = self.blobs.with_prefix(prefix)
        if after is not None:
            rows = rows.filter(key__gt=validate_key(after, what="cursor"))
        page, used = [], 0
        for blob in rows.order_by("key")[:LIST_PAGE_ROWS]:
            summary = blob.summary()
            used += len(json.dumps(summary)) + 1
            if page and used > LIST_PAGE_BYTES:
                return page, page[-1]["key"]
            page.append(summary)
        return page, page[-1]["key"] if len(page) == LIST_PAGE_ROWS else None

    def _check_quota(self, existing, size):
        others = self.blobs.exclude(pk=existing.pk) if existing else self.blobs
        totals = others.aggregate(keys=Count("pk"), used=Sum("size"))
        if existing is None and totals["keys"] >= settings.BLOB_MAX_KEYS:
            raise BlobError(f"blob quota exceeded: you have {settings.BLOB_MAX_KEYS:,} keys, the most allowed")
        used, quota = totals["used"] or 0, settings.BLOB_QUOTA_BYTES
        if used + size > quota:
            raise BlobError(
                f"blob quota exceeded: {_size(used)} of {_size(quota)} used, "
                f"and this value is {_size(size)}. Delete some blobs first."
            )

    def _write(self, data):
        name = f"{self.owner.pk}/{uuid.uuid4().hex}"
        try:
            return blob_storage().save(name, ContentFile(data))
        except Exception:
            logger.exception("Could not write blob for user %s", self.owner.pk)
            # A write cut short (a full disk) leaves part of a file behind, which no row
            # would ever account for or remove. (Found by tests/scale/test_faults.py.)
            _remove_file(name)
            raise BlobError("blob storage is unavailable or full; nothing was written, try again later") from None


# --- Host calls: what vals/std/blob.ts asks for ----------------------------------------


def _payload(payload, op):
    if not isinstance(payload, dict):
        raise BlobError(f"blob.{op}() was called with a malformed request")
    return payload


def _encoded(data, is_text):
    return {"base64": base64.b64encode(data).decode("ascii"), "text": is_text}


def blob_get(principal, payload):
    found = BlobStore(principal).get(_payload(payload, "get").get("key"))
    return None if found is None else _encoded(*found)


def blob_set(principal, payload):
    payload = _payload(payload, "set")
    encoded = payload.get("base64")
    if not isinstance(encoded, str):
        raise BlobError("blob.set() takes a string, Uint8Array, ArrayBuffer or Blob")
    limit = settings.BLOB_MAX_VALUE_BYTES
    if len(encoded) > (limit + 2) // 3 * 4:
        raise BlobError(f"blob value too large: at most {limit:,} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BlobError("blob.set() was sent a value that is not valid base64") from None
    return BlobStore(principal).set(payload.get("key"), data, is_text=payload.get("text") is True).summary()


def blob_delete(principal, payload):
    return {"deleted": BlobStore(principal).delete(_payload(payload, "delete").get("key"))}


def blob_list(principal, payload):
    payload = _payload(payload, "list")
    page, after = BlobStore(principal).list(payload.get("prefix") or "", payload.get("after"))
    return {"blobs": page, "next": after}


HANDLERS = {"blob.get": blob_get, "blob.set": blob_set, "blob.delete": blob_delete, "blob.list": blob_list}
