"""How a caller's value appears in an error message or a log line: escaped and cut short.

Names, ids, paths, parameters, mount flags and context entries come from whoever can reach
the socket, at any length. A gRPC status message travels in a header, and one over the
client's metadata limit reaches the caller as RESOURCE_EXHAUSTED (which the provisioner
reads as "no capacity") instead of the code the driver chose; a log line megabytes long
fills the node's disk. So every such value goes through ``quote`` (or ``shorten`` where
the text is escaped elsewhere, as in a logged request's JSON): at most ``MAX_SHOWN``
characters of it, the middle cut out and the cut marked, with control and format characters
escaped so a value cannot forge or hide text in a log line.
"""

from __future__ import annotations

import os

MAX_SHOWN = 128
_HALF = MAX_SHOWN // 2


def shorten(text: str) -> str:
    """``text`` when it has at most ``MAX_SHOWN`` characters; else its first and last 64
    around a mark saying how many were cut (a path keeps its volume and its leaf)."""
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:_HALF]}...<{len(text) - MAX_SHOWN} characters cut>...{text[-_HALF:]}"


def quote(value: str | os.PathLike[str] | object) -> str:
    """A caller's value as an error or log line shows it: ``shorten``-ed, then quoted and
    escaped as Python's ``repr`` does (control, format and separator characters)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (os.PathLike, bytes)):
        text = os.fsdecode(value)
    else:
        text = str(value)
    return repr(shorten(text))
