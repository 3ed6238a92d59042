from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema

ValType = Literal["script", "http", "cron", "email"]
Privacy = Literal["public", "unlisted", "private"]
EvaluationStatus = Literal["running", "success", "error", "timeout", "killed", "interrupted"]
Trigger = Literal["run", "http", "cron", "email", "api"]


class UserOut(Schema):
    id: int
    username: str
    bio: str
    url: str


class ValOut(Schema):
    id: int
    owner: str
    name: str
    type: ValType
    privacy: Privacy
    readme: str
    code: str
    version: int
    like_count: int
    forked_from: int | None
    forked_from_version: int | None
    created_at: datetime
    updated_at: datetime
    url: str
    raw_url: str


class ValSummary(Schema):
    id: int
    owner: str
    name: str
    type: ValType
    privacy: Privacy
    version: int
    like_count: int
    updated_at: datetime


VAL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,47}$"


class ValIn(Schema):
    name: str = Field(..., min_length=1, max_length=48, pattern=VAL_NAME)
    code: str = Field("", max_length=2_000_000)
    type: ValType = "script"
    privacy: Privacy = "public"
    readme: str = Field("", max_length=200_000)


class ValPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=48, pattern=VAL_NAME)
    type: ValType | None = None
    privacy: Privacy | None = None
    readme: str | None = Field(None, max_length=200_000)


class CodeIn(Schema):
    code: str = Field(..., max_length=2_000_000)


class VersionSummary(Schema):
    number: int
    created_at: datetime


class VersionOut(Schema):
    number: int
    code: str
    created_at: datetime


class VersionSaved(Schema):
    number: int
    created: bool


class LikeOut(Schema):
    liked: bool
    like_count: int


class LogLineOut(Schema):
    seq: int
    level: str
    message: str
    ts: float


class EvaluationSummary(Schema):
    id: int
    val_id: int | None
    val_version: int | None
    trigger: Trigger
    status: EvaluationStatus
    started_at: datetime
    duration_ms: int | None


class EvaluationOut(EvaluationSummary):
    args: Any = None
    logs: list[LogLineOut]
    result: Any = None
    error: Any = None
    kill_reason: str


class RunIn(Schema):
    args: list[Any] = Field(default_factory=list, max_length=100)


class SecretOut(Schema):
    name: str
    updated_at: datetime


class SecretIn(Schema):
    value: str = Field(..., max_length=32 * 1024)


class Page(Schema):
    count: int
    limit: int
    offset: int


class ValPage(Page):
    items: list[ValSummary]


class VersionPage(Page):
    items: list[VersionSummary]


class EvaluationPage(Page):
    items: list[EvaluationSummary]


class SecretList(Schema):
    items: list[SecretOut]
