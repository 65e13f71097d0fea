"""The mount flags a workload may ask for: one allow-list for the controller's capability
checks and for the node, which applies it again right before mount(8).

Pure logic over strings; what is not on the list is INVALID_ARGUMENT naming the flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from csi_disk.errors import InvalidArgument
from csi_disk.quoting import quote

# Mount flags a workload may ask for. Anything that changes who may access the data
# (e.g. uid=), recovery behaviour (norecovery), turns off write barriers (nobarrier,
# barrier=0: a power failure then loses acknowledged writes) or panics the node is not on
# the list.
_PLAIN_FLAGS = frozenset(
    {
        "defaults",
        "ro",
        "rw",
        "noatime",
        "relatime",
        "nodiratime",
        "strictatime",
        "lazytime",
        "nolazytime",
        "nosuid",
        "nodev",
        "noexec",
        "sync",
        "async",
        "dirsync",
        "discard",
        "nodiscard",
        "nouuid",
        "noquota",
        "quota",
        "usrquota",
        "grpquota",
        "prjquota",
        "uquota",
        "gquota",
        "pquota",
        "inode64",
        "inode32",
        "largeio",
        "nolargeio",
        "acl",
        "user_xattr",
        "barrier",
    }
)
_VALUE_FLAGS: dict[str, re.Pattern[str]] = {
    "data": re.compile(r"ordered|writeback|journal"),
    "barrier": re.compile(r"1"),
    "commit": re.compile(r"[0-9]{1,6}"),
    "errors": re.compile(r"remount-ro|continue"),
    "logbufs": re.compile(r"[0-9]{1,2}"),
    "logbsize": re.compile(r"[0-9]{1,6}[kK]?"),
    "allocsize": re.compile(r"[0-9]{1,10}[kKmMgG]?"),
    "stripe": re.compile(r"[0-9]{1,6}"),
}
_SELINUX_FLAGS = frozenset({"context", "fscontext", "defcontext", "rootcontext"})
_SELINUX_LEVEL = r"s[0-9]+(?:-s[0-9]+)?(?::c[0-9]+(?:\.c[0-9]+)?(?:,c[0-9]+(?:\.c[0-9]+)?)*)?"
_SELINUX_CONTEXT = re.compile(r"[a-z0-9_]+:[a-z0-9_]+:[a-z0-9_]+:" + _SELINUX_LEVEL)


def split_flags(text: str) -> list[str]:
    """Split ``a,b,context="x:y:z:s0:c1,c2"`` on commas outside double quotes."""
    words, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            words.append("".join(current))
            current = []
        else:
            current.append(char)
    words.append("".join(current))
    return [w.strip() for w in words if w.strip()]


def _check_flag(flag: str) -> None:
    if flag in _PLAIN_FLAGS:
        return
    name, sep, value = flag.partition("=")
    if sep and name in _VALUE_FLAGS and _VALUE_FLAGS[name].fullmatch(value):
        return
    if sep and name in _SELINUX_FLAGS:
        bare = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
        if _SELINUX_CONTEXT.fullmatch(bare):
            return
    raise InvalidArgument(f"mount flag {quote(flag)} is not allowed")


def check_mount_flags(flags: Iterable[str]) -> list[str]:
    """Return the flags, split on commas, when every one is on the allow-list."""
    checked: list[str] = []
    for entry in flags:
        if any(ord(c) < 32 for c in entry):
            raise InvalidArgument(f"mount flag {quote(entry)} contains control characters")
        for flag in split_flags(entry):
            _check_flag(flag)
            checked.append(flag)
    return checked
