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


def _finish_on_shutdown():
    """Under daphne, when the server stops (SIGTERM, a deploy): write the HTTP-val records
    still waiting in their batch, and mark the evaluations this process was running as
    interrupted, as their Deno processes end with it. Found by tests/scale/test_faults.py."""
    import sys

    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return

    async def finish():
        from django.utils import timezone

        from vals.evaluations.batch import writer
        from vals.evaluations.models import RUNNER, Evaluation

        await writer.close()
        await Evaluation.objects.running().filter(runner=RUNNER).aupdate(
            status=Evaluation.Status.INTERRUPTED, kill_reason="interrupted: the server stopped while it ran", finished_at=timezone.now()
        )

    def before_shutdown():
        import asyncio

        from twisted.internet.defer import Deferred

        return Deferred.fromFuture(asyncio.ensure_future(finish()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


_finish_on_shutdown()

from vals.evaluations.ws_auth import TokenOrSessionAuth  # noqa: E402
from vals.http_gateway import HttpValRouter  # noqa: E402
from valtown.backpressure import SendWaitsForTheSocket  # noqa: E402
from valtown.module_origin import ModuleOrigin  # noqa: E402

# The module origin's port answers module paths alone, before anything else is asked.
# Requests for HTTP vals' own origins are routed next, around Django entirely. Outermost,
# under daphne, a response's send() waits while its connection's write buffer is full:
# else a visitor who stops reading lets a streamed response pile up in this process.
application = SendWaitsForTheSocket(
    ModuleOrigin(
        HttpValRouter(
            ProtocolTypeRouter(
                {
                    "http": django_asgi_app,
                    "websocket": TokenOrSessionAuth(URLRouter(websocket_urlpatterns)),
                }
            )
        )
    )
)


def _freeze_what_start_up_loaded():
    """Django, Twisted and the platform's modules live as long as the server: left in the
    collector's care, every full collection walked them all (~100k objects, ~90 ms each
    on the 2-vCPU dev VM, several times a minute under load, while the batched
    evaluation records kept promoting objects to the oldest generation). Frozen, a full
    collection walks only what requests have made since. Found with bench/http.py."""
    import gc

    gc.collect()
    gc.freeze()


_freeze_what_start_up_loaded()
