"""A pod template from deploy/ run as host processes: ``csi-disk serve`` and the kubernetes-csi
sidecars the pinned ``.ci/go`` builds, each with the args, environment and ServiceAccount the
template gives it.

What a container runtime would provide is translated, nothing more:
- each volume is a folder: an emptyDir gets one of its own, a hostPath under /var/lib/kubelet
  lands in the node's kubelet folder; a path an arg names under a volumeMount's mountPath is
  rewritten to that folder (``--csi-address=/csi/csi.sock``);
- a port bound on all interfaces (``--metrics-address=0.0.0.0:9130``) binds on 127.0.0.1 at a
  free port instead, so nothing listens beyond loopback;
- the in-cluster config becomes ``--kubeconfig`` with a token of the template's
  ServiceAccount from the TokenRequest API, and the namespace a pod would read from its token
  mount becomes ``--leader-election-namespace``;
- every container gets its own UTS namespace whose hostname is the pod's name, the identity
  the sidecars' leader election takes from ``os.Hostname()``.
The livenessprobe (kubelet's prober is not played) and node-driver-registrar (the node agent
registers the driver) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csi_disk_demo.kube import binaries
from csi_disk_demo.kube.control_plane import LOOPBACK, free_port
from csi_disk_emulator.process import dying_with_parent, stop_process

# Image (without tag) -> the .ci/go tool and program that is that image's binary.
SIDECARS = {
    "registry.k8s.io/sig-storage/csi-provisioner": ("csi-provisioner", "csi-provisioner"),
    "registry.k8s.io/sig-storage/csi-attacher": ("csi-attacher", "csi-attacher"),
    "registry.k8s.io/sig-storage/csi-resizer": ("csi-resizer", "csi-resizer"),
    "registry.k8s.io/sig-storage/csi-snapshotter": ("csi-snapshotter", "csi-snapshotter"),
    "registry.k8s.io/sig-storage/snapshot-controller": ("csi-snapshotter", "snapshot-controller"),
}
NOT_RUN = {
    "registry.k8s.io/sig-storage/livenessprobe": "kubelet's prober is not played",
    "registry.k8s.io/sig-storage/csi-node-driver-registrar": "the node agent registers the driver",
}
DRIVER_IMAGE = "csi-disk"
KUBELET_DIR = "/var/lib/kubelet"
ALL_INTERFACES = re.compile(r"^0\.0\.0\.0:\d+$")


def image_name(image: str) -> str:
    """The image without its tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def in_own_uts(hostname: str, argv: list[str]) -> list[str]:
    """``argv`` with ``hostname`` in a UTS namespace of its own, dying with its parent."""
    return dying_with_parent(
        ["unshare", "--uts", "--", sys.executable, "-m", "csi_disk_demo.kube.uts", hostname,
         "--", *argv]
    )  # fmt: skip


@dataclass
class HostPod:
    """One pod of a template, its containers as processes under ``directory``."""

    name: str
    namespace: str
    spec: dict[str, Any]
    directory: Path
    kubeconfig: Path | None = None
    kubelet_dir: Path | None = None
    # Where emptyDir volumes live: a short path, since a unix socket's path has 107 bytes.
    volumes_root: Path | None = None
    secret: Callable[[str, str], str | None] = lambda name, key: None
    extra_args: Mapping[str, list[str]] = field(default_factory=dict)
    base_env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.directory / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ translation

    def volume_dir(self, name: str) -> Path:
        for volume in self.spec.get("volumes", []):
            if volume["name"] != name:
                continue
            host_path = (volume.get("hostPath") or {}).get("path")
            if host_path is None:  # emptyDir and the like: the pod's own folder
                path = (self.volumes_root or self.directory / "volumes") / name
            elif self.kubelet_dir is not None and (
                host_path == KUBELET_DIR or host_path.startswith(KUBELET_DIR + "/")
            ):
                path = self.kubelet_dir / host_path[len(KUBELET_DIR) :].lstrip("/")
            else:
                return Path(host_path)
            path.mkdir(parents=True, exist_ok=True)
            return path
        raise LookupError(f"pod {self.name} has no volume {name}")

    def translate(self, container: dict[str, Any], arg: str) -> str:
        flag, sep, value = arg.partition("=")
        if not sep:
            return arg
        if ALL_INTERFACES.match(value):
            port = free_port()
            self.ports[f"{container['name']}{flag}"] = port
            return f"{flag}={LOOPBACK}:{port}"
        for mount in container.get("volumeMounts", []):
            inside = mount["mountPath"].rstrip("/")
            scheme, _, path = value.rpartition("://")
            prefix = f"{scheme}://" if scheme else ""
            if path == inside or path.startswith(inside + "/"):
                host = self.volume_dir(mount["name"])
                return f"{flag}={prefix}{host}{path[len(inside) :]}"
        return arg

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        env = dict(self.base_env)
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            source = item.get("valueFrom", {})
            ref = source.get("secretKeyRef")
            if ref is not None:
                value = self.secret(ref["name"], ref["key"])
                if value is None and not ref.get("optional"):
                    raise LookupError(f"secret {ref['name']} has no {ref['key']}")
                if value is not None:
                    env[item["name"]] = value
                continue
            field_path = source.get("fieldRef", {}).get("fieldPath")
            if field_path == "metadata.name":
                env[item["name"]] = self.name
            elif field_path == "metadata.namespace":
                env[item["name"]] = self.namespace
            else:
                raise LookupError(f"env {item['name']}: {source} is not played")
        return env

    def argv(self, container: dict[str, Any]) -> list[str] | None:
        """The command for a container, or None for one that is not run here."""
        image = image_name(container["image"])
        args = [self.translate(container, a) for a in container.get("args", [])]
        extra = list(self.extra_args.get(container["name"], []))
        if image == DRIVER_IMAGE:
            command = container.get("command", [])
            if command[:1] != ["csi-disk"]:
                raise ValueError(f"the driver container runs {command}, not csi-disk")
            return [sys.executable, "-m", "csi_disk", *command[1:], *args, *extra]
        if image in NOT_RUN:
            return None
        if image not in SIDECARS:
            raise LookupError(f"no program for image {container['image']}")
        tool, program = SIDECARS[image]
        if self.kubeconfig is not None:
            extra.append(f"--kubeconfig={self.kubeconfig}")
            if "--leader-election" in args or "--leader-election=true" in args:
                extra.append(f"--leader-election-namespace={self.namespace}")
        return [binaries.program(tool, program), *args, *extra]

    # ------------------------------------------------------------------ processes

    def start(self) -> None:
        for container in self.spec["containers"]:
            argv = self.argv(container)
            if argv is None:
                continue
            name = container["name"]
            with open(self.logs / f"{name}.log", "ab") as log:
                self.processes[name] = subprocess.Popen(
                    in_own_uts(self.name, argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env(container),
                    cwd=self.directory,
                )

    def socket(self, volume: str = "socket-dir", file_name: str = "csi.sock") -> Path:
        return self.volume_dir(volume) / file_name

    def check_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{self.name}/{name} exited with {process.returncode}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL every container at once: the pod's node lost power."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait()

    def stop(self) -> None:
        """SIGTERM to every container at once, as kubelet stops a pod; SIGKILL after the
        grace period (``csi-disk serve`` drains in-flight calls meanwhile)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for name in list(self.processes):
            stop_process(self.processes.pop(name), timeout=40)


def environ_for_pods() -> dict[str, str]:
    """What every host pod inherits: this process's environment without cloud keys, so a
    container gets only the credentials its template hands it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
