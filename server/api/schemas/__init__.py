"""Request and response bodies, one module per resource."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list; `count` is the total matching the filters."""

    items: list[Item]
    count: int
    limit: int
    offset: int
