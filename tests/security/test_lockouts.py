"""Nobody can lock a user out of their own runs (finding 3 of the attack review).

An evaluation whose waiter was cancelled (an api() call its caller didn't await, a
/v1/run whose client went away) lost its task and stayed "running" for minutes, counted
against the val's author: an anonymous visitor could make every Run of any user answer
429. Now an evaluation runs to its end whoever waits for it, one that is cancelled is
recorded at once, and api() runs are charged to the top-level caller.
"""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from tests.factory import VisitorFrom, make_user, make_val
from vals.blob import BlobStore
from vals.evaluations import runner
from vals.evaluations.models import Evaluation

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "export default async () => { await new Promise((resolve) => setTimeout(resolve, 1500)); return 'slow done'; };"



async def until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def evaluations_of(val):
    return [evaluation async for evaluation in Evaluation.objects.filter(val=val).order_by("id")]


@override_settings(EVALUATION_MAX_RUNNING_PER_USER=2)
async def test_visitors_who_hang_up_on_v1_run_cannot_lock_its_author_out():
    bob = await sync_to_async(make_user)("bob")
    slow = await sync_to_async(make_val)(bob, name="slow", code=SLOW)

    for attempt in range(4):
        visitor = VisitorFrom(f"203.0.113.{attempt}")
        request = asyncio.ensure_future(visitor.get("/v1/run/bob.slow"))
        await until(lambda: _count_is(slow, attempt + 1))
        request.cancel()  # the visitor hangs up

    # Bob's own run isn't refused: what the visitors started is charged to them (and
    # each of them may have only two runs in progress).
    mine = await runner.start(bob, slow, [])
    assert mine.tenant == f"user:{bob.pk}"

    await runner.wait_for_all()
    abandoned = [evaluation for evaluation in await evaluations_of(slow) if evaluation.pk != mine.pk]
    assert len(abandoned) == 4
    assert {evaluation.status for evaluation in abandoned} == {"success"}, [e.error for e in abandoned]
    assert {evaluation.tenant for evaluation in abandoned} == {f"anonymous:203.0.113.{n}" for n in range(4)}
    assert all(evaluation.result == {"type": "json", "value": "slow done"} for evaluation in abandoned)


async def _count_is(val, count):
    return await Evaluation.objects.filter(val=val).acount() >= count


@override_settings(EVALUATION_MAX_RUNNING_PER_USER=2)
async def test_an_api_call_nobody_awaited_runs_to_its_end_charged_to_its_caller(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    slow = await sync_to_async(make_val)(bob, name="slow", code=SLOW)
    # Starts three api() calls of bob's val, and returns without waiting for them once
    # the test says "go" (alice's blob), while they still run.
    caller = await sync_to_async(make_val)(
        alice,
        name="caller",
        code="""export default async () => {
  const call = (globalThis as any)[Symbol.for("valtown.host.call")];
  for (let i = 0; i < 3; i++) call("api.call", { val: "bob.slow", args: [] }).catch(() => {});
  while (!(await call("blob.get", { key: "go" }))) await new Promise((resolve) => setTimeout(resolve, 20));
  return "left";
};
""",
    )

    parent = await runner.start(alice, caller, [])
    await until(lambda: _count_is(slow, 3))
    await sync_to_async(BlobStore(alice).set)("go", b"1")
    assert (await runner.finished(parent)).result["value"] == "left"

    mine = await runner.start(bob, slow, [])  # bob is not locked out of his own val
    await runner.wait_for_all()
    children = [evaluation for evaluation in await evaluations_of(slow) if evaluation.pk != mine.pk]
    assert [evaluation.status for evaluation in children] == ["success"] * 3, [e.error for e in children]
    assert {(evaluation.principal_id, evaluation.tenant) for evaluation in children} == {(bob.pk, f"user:{alice.pk}")}


async def test_a_cancelled_evaluation_is_recorded_at_once():
    alice = await sync_to_async(make_user)("alice")
    code = "export default async () => { console.log('started'); await new Promise((resolve) => setTimeout(resolve, 60000)); };"
    slow = await sync_to_async(make_val)(alice, name="slow", code=code)
    evaluation = await runner.start(alice, slow, [])
    await until(lambda: _has_logged(evaluation))

    task = runner._tasks[evaluation.pk]
    task.cancel()
    await asyncio.wait([task])

    recorded = await Evaluation.objects.aget(pk=evaluation.pk)
    assert recorded.status == "interrupted" and recorded.finished_at is not None
    assert recorded.kill_reason == "interrupted: the run was cancelled"
    assert [line["message"] for line in recorded.logs] == ["started"]


async def _has_logged(evaluation):
    return bool((await Evaluation.objects.aget(pk=evaluation.pk)).logs)
