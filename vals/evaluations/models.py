import os
import socket
from datetime import timedelta

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

# Which process runs an evaluation, so that a restarted process can tell its own
# abandoned evaluations from those another live process is still running.
RUNNER_HOST = socket.gethostname()
RUNNER = f"{RUNNER_HOST}:{os.getpid()}"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def val_log_group(val_id, principal_id):
    return f"val-{val_id}-as-{principal_id}"


class EvaluationQuerySet(models.QuerySet):
    def running(self):
        return self.filter(status=Evaluation.Status.RUNNING)

    def made_as(self, user):
        return self.filter(principal=user)

    def newest(self):
        return self.order_by("-started_at", "-id")

    def interrupt_abandoned(self):
        """Mark as interrupted every running evaluation whose process is gone.

        That is one started by a dead process on this host, or one that has been
        running far longer than any timeout allows, wherever it ran."""
        now = timezone.now()
        too_old = now - timedelta(seconds=settings.EVALUATION_MAX_SECONDS + 60)
        stale = Q(started_at__lt=too_old)
        for runner in self.running().filter(runner__startswith=RUNNER_HOST + ":").values_list("runner", flat=True).distinct():
            pid = runner.rsplit(":", 1)[1]
            if runner != RUNNER and pid.isdigit() and not _pid_alive(int(pid)):
                stale |= Q(runner=runner)
        return self.running().filter(stale).update(
            status=Evaluation.Status.INTERRUPTED,
            kill_reason="interrupted: the server stopped while it ran",
            finished_at=now,
        )

    def prune(self, keep_per_val, keep_days):
        """Drop evaluations older than keep_days, and all but the newest keep_per_val of each val."""
        deleted, _ = self.filter(started_at__lt=timezone.now() - timedelta(days=keep_days)).exclude(status=Evaluation.Status.RUNNING).delete()
        crowded = self.values("val_id").annotate(n=models.Count("id")).filter(n__gt=keep_per_val).values_list("val_id", flat=True)
        for val_id in crowded:
            keep = list(self.filter(val_id=val_id).newest().values_list("id", flat=True)[:keep_per_val])
            count, _ = self.filter(val_id=val_id).exclude(id__in=keep).exclude(status=Evaluation.Status.RUNNING).delete()
            deleted += count
        return deleted

    def insert_records(self, records):
        """Insert finished evaluations given as dicts of field values by attname (val_id,
        started_at, logs, ...). The values must be plain: ints, strs, None, aware datetimes,
        and JSON-able data for JSON fields; fields a record leaves out get their defaults.

        This is bulk_create without a model instance and compiled SQL for each record, which
        cost ~100 µs a record: an HTTP val records every request it serves, and at that
        price the recording capped its throughput (bench/http.py)."""
        if not records:
            return
        connection = connections[self.db]
        fields = [field for field in self.model._meta.concrete_fields if not field.primary_key]
        adapters = [(field.attname, _adapter(field, connection.ops)) for field in fields]
        defaults = {field.attname: field.get_default() for field in fields}
        insert = "INSERT INTO {} ({}) VALUES ".format(
            connection.ops.quote_name(self.model._meta.db_table),
            ", ".join(connection.ops.quote_name(field.column) for field in fields),
        )
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        rows_per_statement = connection.ops.bulk_batch_size(fields, records)
        with transaction.atomic(using=self.db, savepoint=False), connection.cursor() as cursor:
            for start in range(0, len(records), rows_per_statement):
                chunk = records[start : start + rows_per_statement]
                params = []
                for record in chunk:
                    for name, adapt in adapters:
                        value = record.get(name, defaults[name])
                        params.append(value if adapt is None or value is None else adapt(value))
                cursor.execute(insert + ", ".join([row] * len(chunk)), params)

def _adapter(field, ops):
    """What turns a plain value of this field into the database driver's, the way the
    field itself would; None where the driver takes the value as it is."""
    if isinstance(field, models.JSONField):
        return lambda value: ops.adapt_json_value(value, field.encoder)
    if isinstance(field, models.DateTimeField):
        return ops.adapt_datetimefield_value
    return None


class Evaluation(models.Model):
    """One run of a val, however it was triggered: the evaluation tracing log."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCESS = "success", "Success"
        ERROR = "error", "Error"
        TIMEOUT = "timeout", "Timed out"
        KILLED = "killed", "Killed"
        INTERRUPTED = "interrupted", "Interrupted"

    class Trigger(models.TextChoices):
        RUN = "run", "Run"
        HTTP = "http", "HTTP"
        CRON = "cron", "Cron"
        EMAIL = "email", "Email"
        API = "api", "API"

    val = models.ForeignKey("vals.Val", null=True, blank=True, on_delete=models.CASCADE, related_name="evaluations")
    val_version = models.PositiveIntegerField(null=True, blank=True)
    # Whose identity and secrets the evaluation ran with: the viewer who pressed Run,
    # not necessarily the val's author.
    principal = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="evaluations")
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.RUN)
    # Whom the run is charged to: its top-level caller ("user:<id>", or "anonymous:<address>"
    # for a caller without an account), which for an api() call is the caller of the run
    # that made it, not the val's owner (vals/evaluations/tenants.py).
    tenant = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    args = models.JSONField(default=list, blank=True)
    logs = models.JSONField(default=list, blank=True)
    # {"type": "json" | "undefined" | "response", "value": ...}
    result = models.JSONField(null=True, blank=True)
    # {"name", "message", "stack"}
    error = models.JSONField(null=True, blank=True)
    kill_reason = models.CharField(max_length=200, blank=True)
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    runner = models.CharField(max_length=100, blank=True)
    # HTTP requests only.
    http_method = models.CharField(max_length=10, blank=True)
    http_path = models.CharField(max_length=2000, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)

    objects = EvaluationQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["principal", "-started_at"]),
            models.Index(fields=["val", "-started_at"]),
            models.Index(fields=["status"]),
            models.Index(fields=["tenant", "status"]),
        ]

    def __str__(self):
        return f"Evaluation {self.pk} of {self.val} ({self.status})"

    def get_absolute_url(self):
        return reverse("evaluation", args=[self.pk])

    @property
    def group_name(self):
        """The channel-layer group its live logs are published to."""
        return f"evaluation-{self.pk}"

    @property
    def val_group_name(self):
        """The group that carries every evaluation of this val made as this principal."""
        return val_log_group(self.val_id, self.principal_id)

    @property
    def is_finished(self):
        return self.status != Evaluation.Status.RUNNING

    @property
    def succeeded(self):
        return self.status == Evaluation.Status.SUCCESS

    def is_visible_to(self, user):
        return user.is_authenticated and user.pk == self.principal_id
