import hashlib
import re
import secrets as token_source

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

# A username appears in URLs (/u/alice), in HTTP-val hostnames (alice-foo.web.host)
# and in email-val addresses (alice.foo@host), so it keeps to letters, digits,
# underscores and inner hyphens.
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,37}[A-Za-z0-9_])?$")

# Names that would collide with the site's own routes or look official.
RESERVED_USERNAMES = frozenset(
    """
    about accounts account admin administrator anonymous api app apps assets auth blog
    cdn dashboard docs email eval evals evaluations explore express help home login
    logout mail media new null me root run search security settings signup sign-up
    static status std support system undefined user users u v v1 v2 val vals valtown
    web webhook www
    """.split()
)


def validate_username(value):
    if not USERNAME_PATTERN.match(value or ""):
        raise ValidationError(
            "Usernames use letters, digits, underscores and hyphens (2 to 39 characters), "
            "and start with a letter or digit.",
            code="invalid",
        )
    if value.lower() in RESERVED_USERNAMES:
        raise ValidationError(f"“{value}” is reserved. Please choose another username.", code="reserved")


class CaseInsensitiveUserManager(UserManager):
    def get_by_natural_key(self, username):
        return self.get(username__iexact=username)


class User(AbstractUser):
    username = models.CharField(
        max_length=39,
        unique=True,
        validators=[validate_username],
        error_messages={"unique": "That username is taken."},
    )
    bio = models.CharField(max_length=300, blank=True)

    objects = CaseInsensitiveUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="username_unique_ignoring_case"),
        ]

    def get_absolute_url(self):
        return reverse("profile", args=[self.username])

    @classmethod
    def username_taken(cls, username, exclude_pk=None):
        return cls.objects.filter(username__iexact=username).exclude(pk=exclude_pk).exists()


TOKEN_PREFIX = "vt_"


def hash_token(raw):
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now()))

    def authenticate(self, raw):
        """The token a raw Bearer value names, if it is usable; its last use is recorded."""
        if not raw or not raw.startswith(TOKEN_PREFIX):
            return None
        token = self.usable().filter(hashed=hash_token(raw), user__is_active=True).select_related("user").first()
        if token is not None:
            now = timezone.now()
            if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
                ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
                token.last_used_at = now
        return token


class ApiToken(models.Model):
    """A token for the REST API and the CLI. Only its hash is stored; it is shown once."""

    class Scope(models.TextChoices):
        READ = "read", "Read only"
        WRITE = "write", "Read and write vals"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=5, choices=Scope.choices, default=Scope.READ)
    hashed = models.CharField(max_length=64, unique=True)
    # The first characters, to tell tokens apart in the list without revealing them.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name, scope=Scope.READ, expires_at=None):
        """Create a token. Returns (token, raw): raw is shown to the user once, never stored."""
        raw = TOKEN_PREFIX + token_source.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, scope=scope, hashed=hash_token(raw), prefix=raw[:10], expires_at=expires_at
        )
        return token, raw

    @property
    def can_write(self):
        return self.scope == ApiToken.Scope.WRITE

    @property
    def is_expired(self):
        return self.expires_at is not None and self.expires_at <= timezone.now()
