"""Point the default Site at SITE_ROOT, so allauth's emails carry the right host."""

from urllib.parse import urlparse

from django.conf import settings
from django.db import migrations


def set_site(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    domain = urlparse(settings.SITE_ROOT).netloc or "localhost:8000"
    Site.objects.update_or_create(pk=settings.SITE_ID, defaults={"domain": domain, "name": settings.SITE_NAME})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial"), ("sites", "0002_alter_domain_unique")]

    operations = [migrations.RunPython(set_site, migrations.RunPython.noop)]
