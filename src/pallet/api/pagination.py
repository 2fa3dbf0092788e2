"""Limit/offset pagination with next and previous links."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Sequence

from fastapi import Depends, Query, Request


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def _page_params(limit: Annotated[int, Query(ge=1, le=1000, description="Items per page.")] = 100,
                 offset: Annotated[int, Query(ge=0, description="Items to skip.")] = 0
                 ) -> PageParams:
    return PageParams(limit, offset)


Paging = Annotated[PageParams, Depends(_page_params)]


def page(request: Request, params: PageParams, count: int, items: Sequence[Any],
         convert: Callable[[Any], Any]) -> dict[str, Any]:
    def link(offset: int) -> str:
        return str(request.url.include_query_params(limit=params.limit, offset=offset))

    following = params.offset + params.limit
    return {
        "count": count,
        "next": link(following) if following < count else None,
        "previous": link(max(0, params.offset - params.limit)) if params.offset > 0 else None,
        "results": [convert(item) for item in items],
    }
