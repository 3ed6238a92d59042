"""A small SMTP server that delivers mail to email vals."""

import asyncio
import signal

from aiosmtpd.smtp import SMTP
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand

from vals.evaluations import runner
from vals.inbound_email import InvalidEmail, UnknownRecipient, deliver, val_for_address


class EmailValHandler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if await sync_to_async(val_for_address)(address) is None:
            return "550 5.1.1 No email val receives mail at that address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        try:
            await deliver(envelope.original_content or envelope.content, envelope.rcpt_tos)
        except UnknownRecipient as error:
            return f"550 5.1.1 {error}"
        except InvalidEmail as error:
            return f"554 5.6.0 {error}"
        return "250 Message accepted for delivery"


class Command(BaseCommand):
    help = "Run the SMTP server for email vals. Stops cleanly on SIGTERM or Ctrl+C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.SMTP_HOST)
        parser.add_argument("--port", type=int, default=settings.SMTP_PORT)

    def handle(self, *args, host, port, **options):
        asyncio.run(self.serve(host, port))

    async def serve(self, host, port):
        loop = asyncio.get_running_loop()
        handler = EmailValHandler()
        server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=settings.EMAIL_MAX_BYTES, enable_SMTPUTF8=True, hostname=settings.EMAIL_DOMAIN),
            host=host,
            port=port,
        )
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        self.stdout.write(f"SMTP server for email vals on {host}:{port}, domain {settings.EMAIL_DOMAIN}.")
        await stopping.wait()
        server.close()
        await server.wait_closed()
        await runner.wait_for_all()
        self.stdout.write("SMTP server stopped.")
