from django.apps import AppConfig


class SecretsConfig(AppConfig):
    # Nested under accounts: the standard library owns the top-level name `secrets`.
    name = "accounts.secrets"
    label = "secrets"
    verbose_name = "Secrets"
