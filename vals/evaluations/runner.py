"""Running a val as an evaluation: the bridge from the web app to the runtime pool."""

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

import runtime
from accounts.secrets.models import Redactor, Secret
from vals import source
from vals.capabilities import ApiCalls, host_call_handler
from vals.imports import point_imports_at_module_host
from vals.module_host import needs_library_worker, principal_for_evaluation
from vals.evaluations import tenants
from vals.evaluations.live import LiveLog
from vals.evaluations.models import RUNNER, Evaluation
from vals.evaluations.storable import recorded_error, storable

logger = logging.getLogger(__name__)

# Evaluations started by this process that have not finished yet, by id. Holding the
# tasks keeps them from being garbage-collected mid-run.
_tasks = {}


class TooManyRuns(Exception):
    """The tenant already has as many interactive runs in progress as allowed."""


INTERACTIVE = (Evaluation.Trigger.RUN, Evaluation.Trigger.API)


async def start(
    principal, val, args, trigger=Evaluation.Trigger.RUN, version=None, api_calls=None, limit_running=True, tenant=None
):
    """Record a new evaluation of val (its latest version, or `version`) and start it
    in the background on this event loop, where it runs to its end whoever waits for it.
    `api_calls` is the api() allowance of the evaluation that called this one through
    api(), if any. `tenant` is whom it is charged to (vals/evaluations/tenants.py): by
    default the caller of the run that made this one through api(), else the principal."""
    if tenant is None:
        tenant = api_calls.tenant if api_calls is not None and api_calls.tenant else tenants.of_user(principal)
    if trigger in INTERACTIVE and limit_running:
        running = await Evaluation.objects.running().filter(tenant=tenant, trigger__in=INTERACTIVE).acount()
        limit = settings.EVALUATION_MAX_RUNNING_PER_USER
        if running >= limit:
            raise TooManyRuns(f"You already have {running} runs in progress (at most {limit}). Wait for one to finish.")
    evaluation = await Evaluation.objects.acreate(
        val=val,
        val_version=val.version if version is None else version,
        principal=principal,
        trigger=trigger,
        tenant=tenant,
        args=args,
        runner=RUNNER,
    )
    task = asyncio.get_running_loop().create_task(run(evaluation.pk, api_calls))
    _tasks[evaluation.pk] = task
    task.add_done_callback(lambda _: _tasks.pop(evaluation.pk, None))
    return evaluation


async def wait_for_all():
    """Wait until every evaluation this process started has finished (for tests and shutdown)."""
    while _tasks:
        await asyncio.wait(list(_tasks.values()))


async def wait_for(evaluation_id):
    """Wait until an evaluation this process started has finished. A waiter that is
    cancelled (a client that went away, an api() call nobody awaited) leaves the
    evaluation running: asyncio.wait never cancels what it waits for."""
    task = _tasks.get(evaluation_id)
    if task is not None:
        await asyncio.wait([task])


async def finished(evaluation):
    """The evaluation as recorded once it has finished (it must have been started here)."""
    await wait_for(evaluation.pk)
    return await Evaluation.objects.aget(pk=evaluation.pk)


def evaluation_limits():
    """The runtime limits of every evaluation. The runtime caps logs where they arrive, at
    the size the record keeps (RecordedLogs caps them again after redaction)."""
    return runtime.Limits(timeout_seconds=settings.EVALUATION_TIMEOUT_SECONDS, max_log_bytes=settings.EVALUATION_MAX_LOG_BYTES)


def _code_and_secrets_of(evaluation):
    """What an evaluation runs, and with which secrets. The val's own author runs its code
    with their secrets. Anyone else runs it as an import of it would run: in Restricted
    Library Mode, without their secrets, private vals or blob store (code written by
    someone else never gets the caller's private state); to run it with their own, they
    remix it."""
    val = evaluation.val
    if evaluation.principal_id != val.owner_id:
        return code_running_as_a_library(val, evaluation.val_version), {}
    code = val.versions.get(number=evaluation.val_version).code
    return code, _secrets_of(evaluation.principal)


def code_running_as_a_library(val, version):
    """A module that imports version `version` of another user's val (which the module
    host answers with Restricted Library Mode's stub) and hands on its default export,
    so that a function is called with the arguments and a script has run on import."""
    url = f"/v/{val.owner.username}/{val.name}.ts?v={version}"
    return f'import * as val from "{url}";\nexport default (val as Record<string, unknown>)["default"];\n'


def _secrets_of(principal):
    """The principal's secrets as environment variables; none for an anonymous run."""
    if principal is None:
        return {}
    return Secret.objects.filter(owner_id=principal.pk).environment()


def _prepared(code, principal_id):
    """The code as the sandbox runs it (its imports aimed at the module host), and whether
    it needs Restricted Library Mode's Worker. Reading the source takes time linear in its
    length, so callers run this off the event loop."""
    return point_imports_at_module_host(code), needs_library_worker(code, principal_id)


async def _evaluate(principal, code, args, env, api_calls, on_log=None):
    """Runs code for principal (None: anonymous) on the runtime: its imports aimed at the
    module host, Restricted Library Mode's Worker if it imports another user's val, and
    host calls authorised as principal. A val with a default export has it called with
    the arguments; one without is a script whose top level is the whole run. It takes
    its turns at the runtime's processes as api_calls.tenant."""
    principal_id = principal.pk if principal is not None else None
    await source.read_off_the_loop(source.analyse, code)
    code, library_worker = await sync_to_async(_prepared)(code, principal_id)
    return await runtime.evaluate(
        code=code,
        mode="auto",
        args=args,
        env=env,
        limits=evaluation_limits(),
        on_log=on_log,
        on_call=host_call_handler(principal, api_calls),
        import_grant=principal_for_evaluation(principal),
        library_worker=library_worker,
        # Fair queueing by whom the run is charged to (runtime/README.md), api() calls
        # included: they hold processes of their top-level caller's share, and
        # ApiCalls.take refuses a chain deeper than that share can hold.
        tenant=tenants.for_runtime(api_calls.tenant),
    )


async def run(evaluation_id, api_calls=None):
    """Runs a recorded evaluation to its end and records its outcome. Cancelled (the
    server stopping), it records that at once, instead of staying "running" until
    interrupt_abandoned() finds it minutes later."""
    evaluation = await Evaluation.objects.select_related("val__owner", "principal").aget(pk=evaluation_id)
    api_calls = api_calls or ApiCalls(tenant=evaluation.tenant)
    redactor = Redactor(())
    live = LiveLog(evaluation, redactor)
    try:
        code, env = await sync_to_async(_code_and_secrets_of)(evaluation)
        redactor = live.recorded.redactor = Redactor(env.values())
        result = await _evaluate(evaluation.principal, code, evaluation.args, env, api_calls, on_log=live.add)
        fields = result_fields(result, redactor)
    except asyncio.CancelledError:
        fields = {"status": Evaluation.Status.INTERRUPTED, "kill_reason": "interrupted: the run was cancelled"}
        await asyncio.shield(_record(evaluation, live, fields))
        raise
    except Exception as error:
        logger.exception("Evaluation %s failed in the runtime", evaluation_id)
        fields = {
            "status": Evaluation.Status.ERROR,
            "error": recorded_error({"name": type(error).__name__, "message": str(error)}, redactor),
        }
    await _record(evaluation, live, fields)


async def _record(evaluation, live, fields):
    await live.close()
    fields["logs"] = live.lines
    fields["finished_at"] = timezone.now()
    if "duration_ms" not in fields:
        fields["duration_ms"] = int((fields["finished_at"] - evaluation.started_at).total_seconds() * 1000)
    await Evaluation.objects.filter(pk=evaluation.pk).aupdate(**fields)
    await live.publish({"type": "evaluation.finished", "evaluation_id": evaluation.pk})


def result_fields(result, redactor):
    """The Evaluation fields that record a runtime result, with secrets redacted."""
    return {
        "status": result.status,
        "result": redactor.value(storable(result.value_record())) if result.status == "success" else None,
        "error": recorded_error(result.error, redactor),
        "duration_ms": result.duration_ms,
        "kill_reason": result.kill_reason or "",
        "peak_memory_bytes": result.peak_memory_bytes,
    }


def code_to_evaluate(code):
    """/v1/eval's code as a module: a module (it imports or exports something) as it is,
    an expression as the default export of a function, so that its value is the result."""
    if source.is_module(code):
        return code
    return f"export default async () => (\n{code.strip().rstrip(';')}\n);\n"


async def evaluate_code(principal, code, args, tenant):
    """Evaluates code that is not a saved val (/v1/eval) as principal (None: anonymous,
    without secrets), charged to tenant. Returns (Result, Redactor). Nothing is recorded
    in a trace."""
    env = await sync_to_async(_secrets_of)(principal)
    code = await source.read_off_the_loop(code_to_evaluate, code)
    result = await _evaluate(principal, code, args, env, ApiCalls(tenant=tenant))
    return result, Redactor(env.values())
