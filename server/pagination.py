"""The one way every list is paged: `limit` and `offset` in, `Page` out, with the total and a `next` link."""

# No `from __future__ import annotations`: FastAPI must see the bounds of `paging`'s closure in its signature.

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Depends, Query, Request

from server.schemas import Page

Item = TypeVar("Item")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10**9


@dataclass(frozen=True)
class Paging:
    """Which slice of a list to answer; `path` and `query` are the request's, for the `next` link
    (in-process callers leave them out and get no link)."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    path: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    def page(self, items: Sequence[Item], count: int) -> Page[Item]:
        """The page of `items` (already this slice) out of `count` matching."""
        return Page(items=list(items), count=count, limit=self.limit, offset=self.offset,
                    next=self._next(len(items), count))

    def cut(self, everything: Sequence[Item]) -> Page[Item]:
        """The page of a list that was read whole."""
        return self.page(everything[self.offset:self.offset + self.limit], len(everything))

    def _next(self, shown: int, count: int) -> str | None:
        if self.path is None or self.offset + shown >= count or shown == 0:
            return None
        kept = [(name, value) for name, value in self.query if name not in ("limit", "offset")]
        query = urlencode([*kept, ("limit", str(self.limit)), ("offset", str(self.offset + self.limit))])
        return f"{quote(self.path)}?{query}"


def paging(default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> Callable[..., Paging]:
    """A dependency reading `limit` (1 to `maximum`, `default` if absent) and `offset` from the query."""

    def dependency(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=maximum, description=f"items per page (at most {maximum})")] = default,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")] = 0,
    ) -> Paging:
        return Paging(limit, offset, request.url.path, tuple(request.query_params.multi_items()))

    return dependency


PageDep = Annotated[Paging, Depends(paging())]
WHOLE = Paging(limit=2**62)  # for in-process callers that show a whole list (the dashboard)
