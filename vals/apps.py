from django.apps import AppConfig


class ValsConfig(AppConfig):
    name = "vals"
