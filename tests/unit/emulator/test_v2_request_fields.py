"""Every parameter Alibaba's V2 Python SDK can send for an emulated action is one the action
defines: a request with every field of the SDK's request model filled in passes the
emulator's parameter check (an unknown name is refused as ECS refuses it)."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.model import DaraModel

from csi_disk_emulator.actions import ACTIONS, load_actions

load_actions()


def _sample(hint: Any) -> Any:
    """A value of the annotated type: models and lists of them filled in recursively."""
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006 - the SDK annotates with typing.List
        return [_sample(typing.get_args(hint)[0])]
    if origin in (dict, typing.Dict):  # noqa: UP006
        return {"k": "v"}
    if isinstance(hint, type) and issubclass(hint, DaraModel):
        return _filled(hint)
    return {bool: True, int: 1, float: 1.0}.get(hint, "x")


def _filled(model: type[DaraModel]) -> DaraModel:
    hints = typing.get_type_hints(model.__init__)
    return model(**{name: _sample(hint) for name, hint in hints.items() if name != "return"})


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_sdk_request_field_is_a_defined_parameter(name: str) -> None:
    request = _filled(getattr(models, f"{name}Request"))
    flat = Utils.query(request.to_map())
    assert flat, name
    ACTIONS[name].check_params(flat)  # raises InvalidParameter naming the first unknown one
