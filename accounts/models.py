import re

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

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
