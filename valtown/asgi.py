import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "valtown.settings")
django_asgi_app = get_asgi_application()
if settings.SERVE_STATIC:
    # The embedded default serves /static itself; a deployment lets nginx do it.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from valtown.routing import websocket_urlpatterns  # noqa: E402


def _interrupt_abandoned_evaluations():
    """An evaluation left "running" by a process that stopped is marked interrupted."""
    from django.db import DatabaseError

    from vals.evaluations.models import Evaluation

    try:
        Evaluation.objects.interrupt_abandoned()
    except DatabaseError:
        pass  # not migrated yet: nothing can be running


def _start_embedded_scheduler():
    """Under daphne (runserver), run the scheduler as a task on the server's own loop."""
    import asyncio
    import sys

    reactor = sys.modules.get("twisted.internet.reactor")
    if not settings.EMBEDDED_SCHEDULER or reactor is None:
        return
    from vals.scheduler import Scheduler

    def start():
        scheduler = Scheduler()
        reactor.addSystemEventTrigger("before", "shutdown", scheduler.stop)
        asyncio.get_running_loop().create_task(scheduler.run_forever())

    # callLater, not callWhenRunning: startup triggers fire before the asyncio loop runs.
    reactor.callLater(0, start)


_interrupt_abandoned_evaluations()
_start_embedded_scheduler()

from vals.evaluations.ws_auth import TokenOrSessionAuth  # noqa: E402
from vals.http_gateway import HttpValRouter  # noqa: E402

# Requests for HTTP vals' own origins are routed first, around Django entirely.
application = HttpValRouter(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": TokenOrSessionAuth(URLRouter(websocket_urlpatterns)),
        }
    )
)
