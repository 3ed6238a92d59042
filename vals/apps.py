from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_search_index(sender, using, **kwargs):
    from django.db import connections

    from vals import search_index

    search_index.ensure(connections[using])


class ValsConfig(AppConfig):
    name = "vals"

    def ready(self):
        post_migrate.connect(_ensure_search_index, sender=self)
