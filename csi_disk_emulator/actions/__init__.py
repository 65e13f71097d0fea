"""The action table: every ECS action is a function registered here with the parameters
ECS defines for it.

Adding an action means adding a module to this package (it is imported by
``load_actions``), never touching the server.
"""

from __future__ import annotations

import calendar
import importlib
import json
import pkgutil
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from csi_disk_emulator.errors import EcsError, invalid_parameter, missing_parameter

if TYPE_CHECKING:
    from csi_disk_emulator.cloud import Cloud

# Parameters every RPC call may carry (signing, identity, account scoping).
COMMON_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "Timestamp",
        "RegionId",
        "SecurityToken",
        "ResourceOwnerId",
        "ResourceOwnerAccount",
        "OwnerAccount",
        "OwnerId",
    }
)


# ECS numbers repeated parameters from 1; Tag.N goes to 20, the longest lists to 100.
MAX_INDEX = 100
# Times in requests: ISO 8601 in UTC, to the second or to the minute.
TIME_LAYOUTS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ")


def _index(key: str, digits: str, limit: int) -> int:
    if len(digits) > 3 or not 1 <= int(digits) <= limit:
        raise invalid_parameter(key, f"The index must be between 1 and {limit}.")
    return int(digits)


class Params:
    """Typed access to one request's parameters; errors name the parameter like ECS."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw

    def str(self, name: str, default: str = "") -> str:
        return self.raw.get(name, default)

    def required(self, name: str) -> str:
        value = self.raw.get(name, "")
        if value == "":
            raise missing_parameter(name)
        return value

    def int(
        self, name: str, default: int | None = None, low: int = 0, high: int = 2**31
    ) -> int | None:
        value = self.raw.get(name)
        if value in (None, ""):
            return default
        try:
            number = int(value)
        except ValueError:
            raise invalid_parameter(name, "It must be an integer.") from None
        if not low <= number <= high:
            raise invalid_parameter(name, f"It must be between {low} and {high}.")
        return number

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name)
        if value in (None, ""):
            return default
        if value.lower() not in ("true", "false"):
            raise invalid_parameter(name, "It must be true or false.")
        return value.lower() == "true"

    def time(self, name: str) -> float | None:
        """A UTC time as ECS takes it (``yyyy-MM-ddTHH:mm:ssZ``, or to the minute)."""
        value = self.raw.get(name)
        if value in (None, ""):
            return None
        for layout in TIME_LAYOUTS:
            try:
                return float(calendar.timegm(time.strptime(value, layout)))
            except ValueError:
                continue
        raise invalid_parameter(name, "It must be a UTC time such as 2025-01-02T03:04:05Z.")

    def json_list(self, name: str, malformed_code: str, limit: int) -> list[str] | None:
        value = self.raw.get(name)
        if value in (None, ""):
            return None
        try:
            items = json.loads(value)
        except ValueError:
            raise EcsError(malformed_code) from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise EcsError(malformed_code)
        if len(items) > limit:
            raise invalid_parameter(name, f"At most {limit} items are allowed.")
        return items

    def indexed(
        self, prefix: str, fields: tuple[str, ...], limit: int = MAX_INDEX
    ) -> list[dict[str, str]]:
        """``Prefix.N.Field`` parameters as a list ordered by N (1 <= N <= ``limit``)."""
        pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.({'|'.join(fields)})$")
        grouped: dict[int, dict[str, str]] = {}
        for key, value in self.raw.items():
            match = pattern.match(key)
            if match:
                index = _index(key, match.group(1), limit)
                grouped.setdefault(index, {})[match.group(2)] = value
        return [grouped[i] for i in sorted(grouped)]

    def numbered(self, prefix: str, limit: int = MAX_INDEX) -> list[str]:
        """``Prefix.N`` parameters as a list ordered by N (1 <= N <= ``limit``)."""
        pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)$")
        found = {
            _index(k, m.group(1), limit): v for k, v in self.raw.items() if (m := pattern.match(k))
        }
        return [found[i] for i in sorted(found)]


Handler = Callable[["Cloud", Params], dict[str, Any]]


@dataclass(frozen=True)
class Action:
    name: str
    handler: Handler
    params: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    def check_params(self, raw: dict[str, str]) -> None:
        """Refuse a parameter ECS does not define for this action, naming it."""
        for key in sorted(raw):
            if key in COMMON_PARAMS or key in self.params:
                continue
            if any(p.fullmatch(key) for p in self.patterns):
                continue
            raise invalid_parameter(key, f"It is not defined for action {self.name}.")


ACTIONS: dict[str, Action] = {}


def action(
    name: str, params: Iterable[str] = (), patterns: Iterable[str] = ()
) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the ECS action ``name``."""

    def register(handler: Handler) -> Handler:
        ACTIONS[name] = Action(
            name, handler, frozenset(params), tuple(re.compile(p) for p in patterns)
        )
        return handler

    return register


def load_actions() -> dict[str, Action]:
    """Import every module of this package so their actions register themselves."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return ACTIONS
