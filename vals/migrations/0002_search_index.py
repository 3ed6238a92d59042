from django.db import migrations

from vals import search_index


def create(apps, schema_editor):
    search_index.ensure(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("vals", "0001_initial")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
