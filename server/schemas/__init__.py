"""Request and response bodies, one module per resource."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list: `limit` items after `offset`, out of `count` matching the filters."""

    items: list[Item]
    count: int = Field(description="how many items match the filters, on every page")
    limit: int
    offset: int
    next: str | None = Field(description="path and query of the next page; null on the last one")
