import asyncio
import signal

from django.core.management.base import BaseCommand

from vals.scheduler import Scheduler


class Command(BaseCommand):
    help = "Run the scheduler: cron vals and housekeeping. Stops cleanly on SIGTERM or Ctrl+C."

    def handle(self, *args, **options):
        asyncio.run(self.run())

    async def run(self):
        scheduler = Scheduler()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, scheduler.stop)
        self.stdout.write("Scheduler running.")
        await scheduler.run_forever()
        from vals.evaluations import runner

        await runner.wait_for_all()
        self.stdout.write("Scheduler stopped.")
