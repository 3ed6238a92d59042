from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "vals.evaluations"
    label = "evaluations"
    verbose_name = "Evaluations"
