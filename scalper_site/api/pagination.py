"""Limit/offset pages whose limit and offset the view has already validated."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request


class CheckedPagination(LimitOffsetPagination):
    """DRF's limit/offset page (count, next, previous) of a limit and offset the view has already validated.

    DRF's own parsing would quietly replace a bad value by the default; the view refuses it with a 400 instead
    (``serializers.page_query_serializer``), and hands the values over here.
    """

    default_limit = 50
    max_limit = 500

    def __init__(self, *, limit: int, offset: int) -> None:
        self._limit, self._offset = limit, offset

    def get_limit(self, request: Request) -> int:
        return self._limit

    def get_offset(self, request: Request) -> int:
        return self._offset
