from django.conf import settings
from django.core.management.base import BaseCommand

from vals.evaluations.models import Evaluation


class Command(BaseCommand):
    help = "Keep the newest EVALUATION_KEEP_PER_VAL evaluations of each val, none older than EVALUATION_KEEP_DAYS."

    def handle(self, *args, **options):
        interrupted = Evaluation.objects.interrupt_abandoned()
        deleted = Evaluation.objects.prune(settings.EVALUATION_KEEP_PER_VAL, settings.EVALUATION_KEEP_DAYS)
        self.stdout.write(f"Pruned {deleted} evaluations; marked {interrupted} abandoned ones interrupted.")
