"""Live logs of one evaluation over a websocket, for its principal only."""

import json

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from vals.evaluations.models import Evaluation, val_log_group
from vals.models import Val

REFUSED = 4403


class EvaluationLogConsumer(AsyncWebsocketConsumer):
    """Streams an evaluation's log lines, then its result, then closes.

    Lines carry sequence numbers. The consumer joins the evaluation's group before it
    reads what the database already holds, so every line arrives by one path or the
    other; duplicates are dropped and gaps are filled from the database."""

    async def connect(self):
        self.evaluation_id = int(self.scope["url_route"]["kwargs"]["evaluation_id"])
        self.as_json = b"format=json" in self.scope.get("query_string", b"")
        user = self.scope.get("user")
        evaluation = await Evaluation.objects.filter(pk=self.evaluation_id).afirst()
        if evaluation is None or user is None or not evaluation.is_visible_to(user):
            await self.close(code=REFUSED)
            return
        self.group = evaluation.group_name
        self.next_seq = 0
        self.pending = {}
        self.done = False
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.catch_up()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def catch_up(self):
        """Send what the database has that this socket hasn't had; finish if it's over."""
        evaluation = await Evaluation.objects.aget(pk=self.evaluation_id)
        for line in evaluation.logs[self.next_seq :]:
            self.pending.setdefault(line["seq"], line)
        await self.send_pending_lines()
        if evaluation.is_finished and not self.done:
            self.done = True
            await self.send_result(evaluation)
            await self.close()

    async def send_pending_lines(self):
        while self.next_seq in self.pending:
            await self.send_line(self.pending.pop(self.next_seq))
            self.next_seq += 1
        self.pending = {seq: line for seq, line in self.pending.items() if seq > self.next_seq}

    async def evaluation_log(self, event):
        line = event["line"]
        if line["seq"] < self.next_seq or self.done:
            return
        self.pending[line["seq"]] = line
        # A gap (lines published before this socket joined) is filled by catch_up() when
        # the "evaluation.stored" of the flush that writes them arrives.
        await self.send_pending_lines()

    async def evaluation_stored(self, event):
        """Lines reached the database: fetch any published before this socket joined."""
        if not self.done and event["count"] > self.next_seq:
            await self.catch_up()

    async def evaluation_finished(self, event):
        if not self.done:
            await self.catch_up()

    async def send_line(self, line):
        if self.as_json:
            await self.send_json({"type": "log", **line})
        else:
            html = render_to_string("evaluations/_log_line_oob.html", {"line": line, "evaluation_id": self.evaluation_id})
            await self.send(text_data=html)

    async def send_result(self, evaluation):
        if self.as_json:
            await self.send_json({"type": "result", **evaluation_summary(evaluation)})
        else:
            html = render_to_string("evaluations/_result_oob.html", {"evaluation": evaluation})
            await self.send(text_data=html)

    async def send_json(self, content):
        await self.send(text_data=json.dumps(content))


def evaluation_summary(evaluation):
    return {
        "id": evaluation.pk,
        "status": evaluation.status,
        "duration_ms": evaluation.duration_ms,
        "result": evaluation.result,
        "error": evaluation.error,
        "kill_reason": evaluation.kill_reason,
    }


class ValLogConsumer(AsyncWebsocketConsumer):
    """Follows every new evaluation of one val made as the connected user (`valtown logs --follow`).

    JSON messages: {"type": "log", "evaluation_id", "seq", "level", "message", "ts"} and
    {"type": "result", "evaluation_id", ...} when an evaluation ends."""

    async def connect(self):
        user = self.scope.get("user")
        val = await Val.objects.select_related("owner").filter(pk=int(self.scope["url_route"]["kwargs"]["val_id"])).afirst()
        if val is None or user is None or not user.is_authenticated or not await self._may_follow(val, user):
            await self.close(code=REFUSED)
            return
        self.group = val_log_group(val.pk, user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    @staticmethod
    async def _may_follow(val, user):
        """A val reached by its id: public, the user's own, or one they have run (so an
        unlisted val's id tells nothing to those who don't know its name)."""
        if val.is_visible_by_id_to(user):
            return True
        return val.is_visible_to(user) and await Evaluation.objects.filter(val=val, principal=user).aexists()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def val_log(self, event):
        await self.send(text_data=json.dumps({"type": "log", "evaluation_id": event["evaluation_id"], **event["line"]}))

    async def val_finished(self, event):
        evaluation = await Evaluation.objects.aget(pk=event["evaluation_id"])
        await self.send(text_data=json.dumps({"type": "result", "evaluation_id": evaluation.pk, **evaluation_summary(evaluation)}))
