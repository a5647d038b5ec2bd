"""What every JSON body of the API must be before a route reads it: of a JSON media type, and
nested at most ``MAX_BODY_DEPTH`` levels deep (PRODUCT §9). No I/O; C-speed on large bodies."""

from __future__ import annotations

import email.message
from itertools import accumulate

#: the deepest nesting of arrays and objects a body may have
MAX_BODY_DEPTH = 64
#: ``[`` and ``{`` open a level, ``]`` and ``}`` close one (as bytes.translate tables map them)
_KEEP = b'"[]{}'
_DROP = bytes(b for b in range(256) if b not in _KEEP)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def is_json_type(content_type: str | None) -> bool:
    """Whether ``content_type`` is a JSON media type (``application/json``, ``...+json``)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def too_deep(body: bytes, limit: int = MAX_BODY_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects more than ``limit`` levels deep
    (brackets inside strings do not count). For text that is not JSON the answer is a guess;
    the parser refuses it anyway."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case, decided by two scans in C
    # escaped backslashes first, then escaped quotes: what is left of a string is its two quotes
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = body.translate(None, _DROP)
    brackets = text.replace(b'""', b"")  # strings without brackets, gone in one pass
    if b'"' in brackets:  # some string holds brackets: drop every string's contents
        brackets = b"".join(text.split(b'"')[::2])
    if len(brackets) <= limit:
        return False
    return max(accumulate(map(_STEP.__getitem__, brackets))) > limit
