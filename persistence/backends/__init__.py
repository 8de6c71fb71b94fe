"""The backends, and what the SQL ones share."""

from __future__ import annotations


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (code-point order),
    or None when there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:  # surrogates cannot be stored: skip over them
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None
