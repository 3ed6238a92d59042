from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.db.models.signals import post_migrate


@checks.register(checks.Tags.security)
def check_module_hosts(app_configs, **kwargs):
    """Restricted Library Mode needs two names for the module host (see runtime/README.md)."""
    if settings.RUNTIME_MODULE_HOST == settings.RUNTIME_LIBRARY_HOST:
        return [
            checks.Error(
                "RUNTIME_MODULE_HOST and RUNTIME_LIBRARY_HOST are the same host, so other users' vals "
                "would be imported with the import token that unlocks private vals.",
                hint="Set RUNTIME_MODULE_HOST to this web process's own loopback address, e.g. 127.0.0.1:8000.",
                id="vals.E001",
            )
        ]
    return []


def _ensure_search_index(sender, using, **kwargs):
    from django.db import connections

    from vals import search_index

    search_index.ensure(connections[using])


class ValsConfig(AppConfig):
    name = "vals"

    def ready(self):
        post_migrate.connect(_ensure_search_index, sender=self)
        if settings.REDIS_URL:
            # Schedulers' sandboxes import from a web process: share whom they import for.
            from django.core.cache import cache

            from runtime import grants

            grants.use_shared_store(cache)
