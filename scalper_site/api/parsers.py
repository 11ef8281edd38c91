"""The API's only request parser: JSON, bounded in size and nesting before it is decoded.

Every body this API takes is a small flat object (``{"force": true}``,
``{"scenarioId": "..."}``). Python's ``json`` recurses per nesting level and its
int conversion stops at 4,300 digits, so a hostile body raises RecursionError or
ValueError instead of a decode error; both are refused here as a 400 before they
reach a view. Any other content type is a 415 (DRF: no parser matches).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32

# A JSON string literal (escapes included); what is left once they are cut out is structure and scalars.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Tell whether ``text`` nests arrays and objects deeper than ``limit`` (a linear scan, no recursion)."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False


class BoundedJSONParser(JSONParser):
    """Parse a JSON body of at most ``MAX_BODY_BYTES`` nested at most ``MAX_DEPTH`` deep; anything else is a 400."""

    def parse(self, stream: IO[bytes], media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ParseError(f"JSON body too large: at most {MAX_BODY_BYTES} bytes.")
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON body is not valid {encoding}: {exc}") from None
        if json_depth_exceeds(text, MAX_DEPTH):
            raise ParseError(f"JSON body nested too deep: at most {MAX_DEPTH} levels.")
        try:
            # DRF's json refuses NaN and Infinity (strict JSON); ValueError covers decode errors and huge integers.
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
