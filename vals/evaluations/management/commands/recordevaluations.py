import os
import signal
import sys

from django.core.management.base import BaseCommand
from django.db import connection

from vals.evaluations.batch import read_batch, write


class Command(BaseCommand):
    help = (
        "Write the evaluation records a server process sends on stdin, confirming each batch "
        "on stdout. Each server process starts its own (vals/evaluations/batch.py); it stops "
        "when its server closes stdin."
    )

    def handle(self, *args, **options):
        # Its server decides when it stops, by closing stdin: Ctrl+C or a SIGTERM sent to
        # the whole process group must not cut short the batch the server is waiting for.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Confirmations go out on the original stdout; anything else printed goes to stderr.
        confirmations = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        while self.record_one_batch(sys.stdin.buffer, confirmations):
            pass

    def record_one_batch(self, source, confirmations):
        """Writes the next batch and confirms it. False once the server has closed stdin."""
        batch = read_batch(source)
        if batch is None:
            return False
        if connection.errors_occurred and not connection.is_usable():
            connection.close()  # broken while writing an earlier batch: the next query reconnects
        write(batch)
        confirmations.write(b"+\n")
        return True
