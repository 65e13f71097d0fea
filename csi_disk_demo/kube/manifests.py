"""The project's deploy/ as the cluster gets it: built with the pinned kubectl's kustomize,
read as objects, applied with kubectl. The workloads (the controller StatefulSet, the node
DaemonSet) are not applied: their pod templates are what ``sidecars`` runs as host processes,
so every flag, ServiceAccount and environment variable comes from the YAML an operator applies."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from csi_disk_demo.kube import binaries

DEPLOY = binaries.REPO_ROOT / "deploy"
OVERLAYS = {
    "node": DEPLOY / "kubernetes",
    "controller": DEPLOY / "kubernetes" / "controller-attach",
}
SNAPSHOT_CLASS = DEPLOY / "kubernetes" / "snapshot"
WORKLOADS = {"StatefulSet", "DaemonSet", "Deployment", "Service"}


def build(directory: Path) -> list[dict[str, Any]]:
    built = subprocess.run(
        [binaries.program("kubernetes", "kubectl"), "kustomize", str(directory)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory}: {built.stderr.strip()[-1000:]}")
    return load(built.stdout)


def load(text: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(text) if o]


def load_files(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [o for p in paths for o in load(p.read_text(encoding="utf-8"))]


def dump(objects: Iterable[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(objects), sort_keys=False)


def find(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for o in objects:
        if o.get("kind") == kind and o.get("metadata", {}).get("name") == name:
            return o
    raise LookupError(f"no {kind} {name} in the manifests")


def cluster_objects(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What an install creates in the API: everything but the workloads."""
    return [o for o in objects if o.get("kind") not in WORKLOADS]
