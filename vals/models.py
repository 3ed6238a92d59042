import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property

from vals import source
from vals.names import validate_val_name
from vals.schedules import parse_schedule
from vals.templates_for_new_vals import TEMPLATES


def human_size(num_bytes):
    if num_bytes < 1024:
        return f"{num_bytes} bytes"
    if num_bytes < 1024 * 1024:
        return f"{num_bytes / 1024:.1f} KB".replace(".0 KB", " KB")
    return f"{num_bytes / 1024 / 1024:.1f} MB".replace(".0 MB", " MB")


def validate_code_size(code):
    size = len(code.encode("utf-8"))
    limit = settings.VAL_MAX_CODE_BYTES
    if size > limit:
        raise ValidationError(
            f"The code is {size:,} bytes; the limit is {human_size(limit)} ({limit:,} bytes). "
            "Nothing was saved.",
            code="too_large",
        )


def search_terms(query):
    """The words of a search box query, safe to hand to any full-text engine."""
    return re.findall(r"\w+", query or "")[:8]


# How api() and /v1/run spell a val: "user.val" or "@user/val".
API_VAL_NAME = re.compile(r"^@?(?P<username>[A-Za-z0-9_-]{1,150})[./](?P<name>[A-Za-z_][A-Za-z0-9_]{0,47})$")


class ValQuerySet(models.QuerySet):
    def public(self):
        return self.filter(privacy=Val.Privacy.PUBLIC)

    def visible_to(self, user):
        """Vals the user may open by URL: public and unlisted ones, and their own."""
        shared = Q(privacy__in=[Val.Privacy.PUBLIC, Val.Privacy.UNLISTED])
        if user.is_authenticated:
            return self.filter(shared | Q(owner=user))
        return self.filter(shared)

    def listed_for(self, user):
        """Vals that may appear in lists the user sees: public ones, and their own."""
        if user.is_authenticated:
            return self.filter(Q(privacy=Val.Privacy.PUBLIC) | Q(owner=user))
        return self.public()

    def named(self, username, name):
        return self.filter(owner__username__iexact=username, name__iexact=name)

    def named_any(self, names):
        """{(username, name) in lower case: val} for the (username, name) pairs given, in
        one query, whatever their number."""
        wanted = {(username.lower(), name.lower()) for username, name in names}
        if not wanted:
            return {}
        found = (
            self.annotate(owner_lower=Lower("owner__username"), name_lower=Lower("name"))
            .filter(owner_lower__in={u for u, _ in wanted}, name_lower__in={n for _, n in wanted})
            .select_related("owner")
        )
        return {
            (val.owner_lower, val.name_lower): val for val in found if (val.owner_lower, val.name_lower) in wanted
        }

    def callable_as_api(self, spelled, principal):
        """The val that api("user.val") and /v1/run/user.val name (or "@user/val"), if
        principal (None: anonymous) may run it as its author; else None, so that someone
        else's private val is the same answer as one that doesn't exist."""
        match = API_VAL_NAME.match(spelled)
        val = self.named(match["username"], match["name"]).select_related("owner").first() if match else None
        if val is None or (val.privacy == Val.Privacy.PRIVATE and (principal is None or principal.pk != val.owner_id)):
            return None
        return val

    def receiving_mail(self):
        """Email vals that mail may run: not private ones. Mail carries no identity (a From
        header is whatever the sender typed), so every sender is a stranger, and to a
        stranger a private val is one that doesn't exist. Filtering in the query keeps a
        private address on the same path as a missing one: one query, no second look."""
        return self.filter(type=Val.Type.EMAIL).exclude(privacy=Val.Privacy.PRIVATE)

    def newest(self):
        return self.order_by("-created_at", "-id")

    def due_crons(self, now):
        return self.filter(type=Val.Type.CRON, schedule_paused=False, next_run_at__lte=now).order_by("next_run_at")

    def most_liked(self):
        return self.filter(like_count__gt=0).order_by("-like_count", "-created_at", "-id")

    def search(self, query):
        """Full-text search over names, readmes and code, through the database's index."""
        terms = search_terms(query)
        if not terms:
            return self.none()
        vendor = connection.vendor
        if vendor == "postgresql":
            tsquery = " & ".join(f"{term}:*" for term in terms)
            return self.extra(
                where=["vals_val.search_document @@ to_tsquery('simple', %s)"], params=[tsquery]
            )
        if vendor == "sqlite":
            match = " AND ".join('"' + term.replace('"', '""') + '"*' for term in terms)
            return self.extra(
                where=["vals_val.id IN (SELECT rowid FROM vals_val_fts WHERE vals_val_fts MATCH %s)"],
                params=[match],
            )
        condition = Q()
        for term in terms:
            condition &= Q(name__icontains=term) | Q(readme__icontains=term)
        return self.filter(condition)


class Val(models.Model):
    class Type(models.TextChoices):
        SCRIPT = "script", "Script"
        HTTP = "http", "HTTP"
        CRON = "cron", "Cron"
        EMAIL = "email", "Email"

    class Privacy(models.TextChoices):
        PUBLIC = "public", "Public"
        UNLISTED = "unlisted", "Unlisted"
        PRIVATE = "private", "Private"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vals")
    name = models.CharField(max_length=48, validators=[validate_val_name])
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.SCRIPT)
    privacy = models.CharField(max_length=8, choices=Privacy.choices, default=Privacy.PUBLIC)
    readme = models.TextField(blank=True)
    # The latest version's code and number, kept on the val for listings and search.
    code = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=0)
    forked_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks")
    forked_from_version = models.PositiveIntegerField(null=True, blank=True)
    like_count = models.PositiveIntegerField(default=0)
    # Cron vals only. The scheduler claims a due run by moving next_run_at forward.
    schedule = models.CharField(max_length=100, blank=True)
    schedule_paused = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ValQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint("owner", Lower("name"), name="val_name_unique_per_owner_ignoring_case"),
        ]
        indexes = [
            models.Index(fields=["privacy", "-created_at"]),
            models.Index(fields=["privacy", "-like_count"]),
        ]

    def __str__(self):
        return f"@{self.owner.username}/{self.name}"

    # Creating

    @classmethod
    def name_taken(cls, owner, name, exclude_pk=None):
        return cls.objects.filter(owner=owner, name__iexact=name).exclude(pk=exclude_pk).exists()

    @classmethod
    def free_name(cls, owner, wanted):
        """`wanted`, or the first of wanted_1, wanted_2, … that owner hasn't used."""
        if not cls.name_taken(owner, wanted):
            return wanted
        suffix = 1
        while cls.name_taken(owner, f"{wanted[:40]}_{suffix}"):
            suffix += 1
        return f"{wanted[:40]}_{suffix}"

    @classmethod
    def create(cls, owner, name, code=None, type=Type.SCRIPT, privacy=Privacy.PUBLIC, readme="", **extra):
        if code is None:
            code = TEMPLATES[type]
        validate_val_name(name)
        validate_code_size(code)
        source.analyse(code)  # before the transaction, which holds the database's write lock
        if cls.name_taken(owner, name):
            raise ValidationError({"name": f"You already have a val named “{name}”."})
        with transaction.atomic():
            val = cls.objects.create(
                owner=owner, name=name, code=code, type=type, privacy=privacy, readme=readme, version=0, **extra
            )
            ValVersion.objects.create(val=val, number=0, code=code)
            val.record_imports()
            if type == Val.Type.CRON:
                val.set_schedule(val.schedule or settings.CRON_DEFAULT_SCHEDULE)
        return val

    # Versions

    def save_version(self, code):
        """Save code as the next version, unless it is what the latest version holds.

        Returns the latest version and whether it is new."""
        validate_code_size(code)
        source.analyse(code)  # before the transaction, which holds the database's write lock
        with transaction.atomic():
            locked = Val.objects.select_for_update().get(pk=self.pk)
            if locked.code == code:
                self.code, self.version = locked.code, locked.version
                return locked.versions.get(number=locked.version), False
            number = locked.version + 1
            version = ValVersion.objects.create(val=self, number=number, code=code)
            Val.objects.filter(pk=self.pk).update(code=code, version=number, updated_at=version.created_at)
            self.code, self.version = code, number
            self.record_imports()
        return version, True

    def revert_to(self, number):
        """Save an old version's code as a new version; history is never rewritten."""
        old = self.versions.get(number=number)
        return self.save_version(old.code)

    def version_numbered(self, number):
        return self.versions.get(number=number)

    # Cron schedules

    def type_changed(self):
        """Keep the cron schedule in step with the val's type after the type is edited."""
        if self.type == Val.Type.CRON:
            self.set_schedule(self.schedule or settings.CRON_DEFAULT_SCHEDULE)
        elif self.next_run_at is not None:
            self.next_run_at = None
            self.save(update_fields=["next_run_at"])

    def set_schedule(self, text, paused=None):
        """Set (and validate) the schedule; the next run is counted from now."""
        schedule = parse_schedule(text)
        self.schedule = schedule.text
        if paused is not None:
            self.schedule_paused = paused
        self.next_run_at = self.next_scheduled_run()
        self.save(update_fields=["schedule", "schedule_paused", "next_run_at", "updated_at"])

    def next_scheduled_run(self, after=None):
        if self.type != Val.Type.CRON or not self.schedule or self.schedule_paused:
            return None
        return parse_schedule(self.schedule).next_after(after or timezone.now())

    def claim_due_run(self, now):
        """Move next_run_at past now, if no other scheduler did first. True if this one won."""
        won = Val.objects.filter(pk=self.pk, next_run_at=self.next_run_at, schedule_paused=False).update(
            next_run_at=self.next_scheduled_run(after=now), last_run_at=now
        )
        return won == 1

    # Naming and settings

    def rename(self, new_name):
        validate_val_name(new_name)
        if Val.name_taken(self.owner, new_name, exclude_pk=self.pk):
            raise ValidationError({"name": f"You already have a val named “{new_name}”."})
        self.name = new_name
        self.save(update_fields=["name", "updated_at"])

    # Access

    def is_owned_by(self, user):
        return user.is_authenticated and user.pk == self.owner_id

    def is_visible_to(self, user):
        return self.privacy != Val.Privacy.PRIVATE or self.is_owned_by(user)

    def is_visible_by_id_to(self, user, spelled=None):
        """Whether user may reach the val by its id. Ids are counted, not chosen, so an
        unlisted val (open to whoever knows its name) is reached by id only with its
        name too, `spelled` "owner/name", as the forms on its page send it."""
        if self.privacy == Val.Privacy.PUBLIC or self.is_owned_by(user):
            return True
        return (
            self.privacy == Val.Privacy.UNLISTED
            and spelled is not None
            and spelled.lower() == f"{self.owner.username}/{self.name}".lower()
        )

    def is_listed(self):
        return self.privacy == Val.Privacy.PUBLIC

    @property
    def receives_mail(self):
        """What Val.objects.receiving_mail() says of this val."""
        return self.type == Val.Type.EMAIL and self.privacy != Val.Privacy.PRIVATE

    def can_be_forked_by(self, user):
        return user.is_authenticated and self.is_visible_to(user)

    # Social

    def fork_for(self, user):
        if not self.can_be_forked_by(user):
            raise PermissionError("You can't fork this val.")
        return Val.create(
            owner=user,
            name=Val.free_name(user, self.name),
            code=self.code,
            type=self.type,
            privacy=self.privacy,
            readme=self.readme,
            forked_from=self,
            forked_from_version=self.version,
        )

    def forks_visible_to(self, user):
        return self.forks.listed_for(user).select_related("owner").newest()

    def is_liked_by(self, user):
        return user.is_authenticated and self.likes.filter(user=user).exists()

    def like_by(self, user):
        _, created = Like.objects.get_or_create(val=self, user=user)
        if created:
            Val.objects.filter(pk=self.pk).update(like_count=F("like_count") + 1)
            self.refresh_from_db(fields=["like_count"])

    def unlike_by(self, user):
        deleted, _ = Like.objects.filter(val=self, user=user).delete()
        if deleted:
            Val.objects.filter(pk=self.pk).update(like_count=F("like_count") - 1)
            self.refresh_from_db(fields=["like_count"])

    # URLs

    def get_absolute_url(self):
        return reverse("val", args=[self.owner.username, self.name])

    def url_for(self, view_name):
        return reverse(view_name, args=[self.owner.username, self.name])

    @cached_property
    def raw_url(self):
        return reverse("val_raw", args=[self.owner.username, self.name])

    @property
    def import_url(self):
        return settings.SITE_ROOT.rstrip("/") + self.raw_url

    @property
    def pinned_import_url(self):
        """The import URL of the latest version as it is now: it never changes."""
        return f"{self.import_url}?v={self.version}"

    # Imports

    def imports_visible_to(self, user, limit=50):
        """(val, pinned version or None) for the first `limit` vals this one's code
        imports that user may see, found in one query."""
        from vals.imports import imported_vals

        imported = imported_vals(self.code)[: limit * 2]
        vals = Val.objects.named_any((username, name) for username, name, _ in imported)
        found = []
        for username, name, version in imported:
            val = vals.get((username.lower(), name.lower()))
            if val is not None and val.is_visible_to(user):
                found.append((val, version))
        return found[:limit]

    def record_imports(self):
        """Keeps the vals this one's latest code imports in ValImport, so that "used by"
        is one indexed query instead of a reading of every candidate's code."""
        from vals.imports import imported_vals

        names = {}
        for username, name, _ in imported_vals(self.code):
            if len(username) <= ValImport.USERNAME_LENGTH and len(name) <= ValImport.NAME_LENGTH:
                names.setdefault((username.lower(), name.lower()), None)
            if len(names) >= settings.VAL_MAX_RECORDED_IMPORTS:
                break
        ValImport.objects.filter(val=self).delete()
        ValImport.objects.bulk_create([ValImport(val=self, username=u, name=n) for u, n in names])

    def used_by_visible_to(self, user, limit=50):
        """Vals whose latest code imports this one, among those user may list."""
        return (
            Val.objects.listed_for(user)
            .filter(imports_made__username=self.owner.username.lower(), imports_made__name=self.name.lower())
            .exclude(pk=self.pk)
            .select_related("owner")
            .newest()[:limit]
        )

    @property
    def endpoint_url(self):
        """Where an HTTP val is served: its own origin, never the app's."""
        host = f"{self.owner.username}-{self.name}".lower()
        return f"{settings.HTTP_VAL_SCHEME}://{host}.{settings.HTTP_VAL_DOMAIN}/"

    @property
    def email_address(self):
        return f"{self.owner.username}.{self.name}@{settings.EMAIL_DOMAIN}".lower()

    @property
    def code_size(self):
        return human_size(len(self.code.encode("utf-8")))


class ValVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ValidationError("Val versions are immutable.")

    def delete(self):
        raise ValidationError("Val versions are only deleted with their val.")


class ValVersion(models.Model):
    """One saved state of a val's code. Never changed once written."""

    val = models.ForeignKey(Val, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    code = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ValVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint("val", "number", name="version_number_unique_per_val")]

    def __str__(self):
        return f"{self.val} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValidationError("Val versions are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Val versions are only deleted with their val.")


class ValImport(models.Model):
    """A val that another val's latest code imports, by its names in lower case (the
    imported val may not exist, or may be renamed later: names are what code holds)."""

    USERNAME_LENGTH = 39
    NAME_LENGTH = 48

    val = models.ForeignKey(Val, on_delete=models.CASCADE, related_name="imports_made")
    username = models.CharField(max_length=USERNAME_LENGTH)
    name = models.CharField(max_length=NAME_LENGTH)

    class Meta:
        constraints = [models.UniqueConstraint("val", "username", "name", name="one_import_row_per_imported_val")]
        indexes = [models.Index(fields=["username", "name"])]


class Like(models.Model):
    val = models.ForeignKey(Val, on_delete=models.CASCADE, related_name="likes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="likes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint("val", "user", name="one_like_per_user")]


# Imported so that Django sees the model; it lives with the rest of std/blob.
from vals.blob import Blob  # noqa: E402, F401
