"""Where the real components are: the Go tools ``.ci/go/build`` compiles from their modules at
pinned versions (built once per machine, reused after), and the snapshot CRDs and
snapshot-controller RBAC, read from the same pinned modules in Go's module cache."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD = REPO_ROOT / ".ci" / "go" / "build"
SNAPSHOTTER_CLIENT = "github.com/kubernetes-csi/external-snapshotter/client/v8"
SNAPSHOTTER = "github.com/kubernetes-csi/external-snapshotter/v8"


class BuildError(RuntimeError):
    """A component could not be built or found."""


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise BuildError("no Go toolchain (go on PATH or /usr/local/go/bin/go)")
    return found


@functools.cache
def tool_bin(tool: str) -> Path:
    """The bin folder of a ``.ci/go`` tool; builds it first when this machine has not (minutes,
    once, with the builder's progress on stderr)."""
    built = subprocess.run(
        ["bash", str(BUILD), tool], stdout=subprocess.PIPE, text=True, check=False
    )
    if built.returncode != 0 or not built.stdout.strip():
        raise BuildError(f"cannot build {tool} (see .ci/go/build's output above)")
    return Path(built.stdout.strip().splitlines()[-1])


def program(tool: str, name: str) -> str:
    path = tool_bin(tool) / name
    if not path.exists():
        raise BuildError(f"{tool} has no program {name} ({path})")
    return str(path)


@functools.cache
def module_dir(tool: str, module: str) -> Path:
    """The source folder of ``module`` at the version ``.ci/go/<tool>``'s build list pins."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    found = subprocess.run(
        [_go(), "mod", "download", "-json", module],
        cwd=REPO_ROOT / ".ci" / "go" / tool,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if found.returncode != 0:
        raise BuildError(f"cannot fetch {module}: {found.stderr.strip()[-500:]}")
    return Path(json.loads(found.stdout)["Dir"])


def snapshot_crds() -> Path:
    """The kustomization of the snapshot CRDs (volume and group snapshots, which
    snapshot-controller looks for at start), from the client module the pinned csi-snapshotter
    is built with."""
    crds = module_dir("csi-snapshotter", SNAPSHOTTER_CLIENT) / "config" / "crd"
    if not (crds / "kustomization.yaml").exists():
        raise BuildError(f"snapshot CRDs missing from {SNAPSHOTTER_CLIENT}")
    return crds


def snapshot_controller_rbac() -> Path:
    """The snapshot-controller's ServiceAccount and roles as external-snapshotter ships them."""
    return (
        module_dir("csi-snapshotter", SNAPSHOTTER)
        / "deploy" / "kubernetes" / "snapshot-controller" / "rbac-snapshot-controller.yaml"
    )  # fmt: skip
