"""The host port holds: the Linux host and the unit tests' fake implement every method of the
``Host`` Protocol with its signature, and the node handler and the safe format-and-mount
policy ask their host for nothing else.

A structural check that runs with the suite, in place of a static type checker: parameter
names, kinds, defaults and resolved annotations must match the Protocol's exactly, so a
fake that drifts from the port fails here rather than passing handler tests it no longer
stands for.
"""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

from csi_disk.host.linux import LinuxHost
from csi_disk.host.port import Host
from tests.fakes import FakeHost, InMemoryCloud

REPO = Path(__file__).resolve().parents[3]
PORT_METHODS = sorted(
    name for name, value in vars(Host).items() if callable(value) and not name.startswith("_")
)


def shape(function: typing.Any) -> tuple[list[tuple[str, object, object]], dict[str, object]]:
    """(name, kind, default) of each parameter but ``self``, and the resolved annotations."""
    params = [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name != "self"
    ]
    return params, typing.get_type_hints(function)


def test_the_port_names_what_the_node_needs() -> None:
    assert {"find_device", "probe", "format", "mount", "unmount", "grow"} <= set(PORT_METHODS)


@pytest.mark.parametrize("implementation", [LinuxHost, FakeHost], ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", PORT_METHODS)
def test_implementation_matches_the_protocol(implementation: type, method: str) -> None:
    ours = getattr(implementation, method, None)
    assert callable(ours), f"{implementation.__name__} lacks {method}"
    assert shape(ours) == shape(getattr(Host, method))


@pytest.mark.parametrize(
    "host", [LinuxHost(Path("/")), FakeHost(InMemoryCloud())], ids=lambda h: type(h).__name__
)
def test_instances_are_hosts(host: object) -> None:
    assert isinstance(host, Host)


def host_calls(path: Path) -> set[str]:
    """Attributes read off ``self._host`` in a module."""
    tree = ast.parse(path.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_host"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }


@pytest.mark.parametrize("module", ["csi_disk/node.py", "csi_disk/host/safe_mount.py"])
def test_callers_use_the_port_only(module: str) -> None:
    used = host_calls(REPO / module)
    assert used, f"{module} no longer talks to its host through self._host"
    assert used <= set(PORT_METHODS), used - set(PORT_METHODS)
