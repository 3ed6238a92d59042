from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    """The runtime needs no models; the pool starts lazily on the first evaluation."""

    name = "runtime"
    verbose_name = "Runtime"
