"""The body of every error answer: RFC 9457 problem details (`application/problem+json`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    """One invalid part of a request: where (`loc`, e.g. `["body", "waves", 0, "soak_s"]`) and what is wrong."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """What went wrong: `type` names the error class (stable), `detail` this occurrence, for people."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="the error class, a URI reference such as `/problems/not-found`; stable")
    title: str = Field(description="a short summary of the error class")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong this time, readable by a person")
    instance: str = Field(description="the path of the request that failed")
    errors: list[FieldProblem] | None = Field(default=None, description="every invalid field (422 only)")
    service: str | None = Field(default=None, description="the backing service that is unavailable (503 only)")
