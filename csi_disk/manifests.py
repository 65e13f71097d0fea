"""Kubernetes manifests and RAM policies for the driver, rendered from one set of options.

Operators install with ``kubectl apply -k``; the checked-in ``deploy/`` tree is this module's
output (a drift test keeps them equal), so a flag, a socket path or an RBAC rule is changed in
one place only. Rendering needs nothing beyond the standard library: YAML is emitted by a
small deterministic writer here, because the driver image does not ship PyYAML.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from csi_disk import DRIVER_NAME
from csi_disk.config import Config

ATTACH_MODES = ("node", "controller")
CREDENTIALS = ("secret", "ramrole")

# The image tag follows the project version; a test keeps the two equal.
IMAGE_TAG = "0.1.0"
DEFAULT_IMAGE = f"csi-disk:{IMAGE_TAG}"

SIDECAR_REGISTRY = "registry.k8s.io/sig-storage"

# Labels every object carries and selectors match on.
APP = "csi-disk"
VOLUME_NAME_TAG = "csi.alibabacloud.com/volume-name"

SOCKET_DIR = "/csi"
SOCKET_PATH = f"{SOCKET_DIR}/csi.sock"
ENDPOINT = f"unix://{SOCKET_PATH}"

# Flags of ``csi-disk serve`` the manifests may pass; the tests hold the rendered args to it.
SERVE_FLAGS_USED = (
    "--endpoint",
    "--mode",
    "--driver-name",
    "--attach-mode",
    "--metrics-address",
    "--log-level",
    "--log-format",
    "--kubelet-dir",
)

CREDENTIALS_SECRET = "csi-disk-credentials"  # noqa: S105 (a Secret name, not a secret)
ACCESS_KEY_ID_ENV = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ACCESS_KEY_SECRET_ENV = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 (an env var name)

Obj = dict[str, Any]


@dataclass(frozen=True)
class SidecarImages:
    """The kubernetes-csi sidecars, pinned by tag so an install is reproducible."""

    provisioner: str = f"{SIDECAR_REGISTRY}/csi-provisioner:v5.3.0"
    attacher: str = f"{SIDECAR_REGISTRY}/csi-attacher:v4.10.0"
    resizer: str = f"{SIDECAR_REGISTRY}/csi-resizer:v1.14.0"
    snapshotter: str = f"{SIDECAR_REGISTRY}/csi-snapshotter:v8.3.0"
    livenessprobe: str = f"{SIDECAR_REGISTRY}/livenessprobe:v2.17.0"
    node_driver_registrar: str = f"{SIDECAR_REGISTRY}/csi-node-driver-registrar:v2.15.0"


@dataclass(frozen=True)
class ManifestOptions:
    """Everything an operator may choose when rendering the install."""

    attach_mode: str = "node"
    image: str = DEFAULT_IMAGE
    namespace: str = "kube-system"
    sidecars: SidecarImages = field(default_factory=SidecarImages)
    credentials: str = "secret"  # "secret": AccessKey from a Secret; "ramrole": instance RAM role
    credentials_secret: str = CREDENTIALS_SECRET
    # Cloud disks take tens of seconds to create or attach; the sidecars' 10-15 s defaults
    # would cancel calls that are about to succeed.
    provisioner_timeout: str = "300s"
    worker_threads: int = 100
    kubelet_dir: str = "/var/lib/kubelet"
    log_level: str = "info"
    log_format: str = "json"
    controller_metrics_port: int = 9130
    node_metrics_port: int = 9131
    controller_health_port: int = 9808
    node_health_port: int = 9809
    registrar_health_port: int = 9810
    snapshots: bool = True  # run csi-snapshotter (needs the snapshot CRDs in the cluster)

    def __post_init__(self) -> None:
        if self.attach_mode not in ATTACH_MODES:
            raise ValueError(f"attach_mode must be one of {ATTACH_MODES}, not {self.attach_mode!r}")
        if self.credentials not in CREDENTIALS:
            raise ValueError(f"credentials must be one of {CREDENTIALS}, not {self.credentials!r}")
        if self.worker_threads < 1:
            raise ValueError("worker_threads must be at least 1")

    @property
    def attach_required(self) -> bool:
        return self.attach_mode == "controller"

    @property
    def plugin_dir(self) -> str:
        """Where kubelet finds the node plugin's socket on the host."""
        return f"{self.kubelet_dir}/plugins/{DRIVER_NAME}"

    @property
    def registration_dir(self) -> str:
        return f"{self.kubelet_dir}/plugins_registry"


# --------------------------------------------------------------------------- helpers


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}


def _meta(name: str, namespace: str | None = None, component: str | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = _labels(component) if component else {"app.kubernetes.io/name": APP}
    return meta


def _rule(groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str]) -> Obj:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


def _resources(cpu: str, memory: str, memory_limit: str) -> Obj:
    # No CPU limit: throttling a storage plugin stalls mounts; memory is bounded to catch leaks.
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def _socket_mount() -> Obj:
    return {"name": "socket-dir", "mountPath": SOCKET_DIR}


def _credential_env(options: ManifestOptions) -> list[Obj]:
    """AccessKey env from a Secret; optional, so a missing Secret falls back to the RAM role."""
    if options.credentials != "secret":
        return []
    return [
        {
            "name": env,
            "valueFrom": {
                "secretKeyRef": {"name": options.credentials_secret, "key": key, "optional": True}
            },
        }
        for env, key in (
            (ACCESS_KEY_ID_ENV, "access-key-id"),
            (ACCESS_KEY_SECRET_ENV, "access-key-secret"),
        )
    ]


def _serve_args(options: ManifestOptions, mode: str, metrics_port: int) -> list[str]:
    args = [
        f"--endpoint={ENDPOINT}",
        f"--mode={mode}",
        f"--driver-name={DRIVER_NAME}",
        f"--attach-mode={options.attach_mode}",
        f"--metrics-address=0.0.0.0:{metrics_port}",
        f"--log-level={options.log_level}",
        f"--log-format={options.log_format}",
    ]
    if mode == "node":
        args.append(f"--kubelet-dir={options.kubelet_dir}")
    return args


def _health_probe() -> Obj:
    return {
        "httpGet": {"path": "/healthz", "port": "healthz"},
        "initialDelaySeconds": 10,
        "timeoutSeconds": 3,
        "periodSeconds": 10,
        "failureThreshold": 5,
    }


def _livenessprobe(options: ManifestOptions, port: int) -> Obj:
    return {
        "name": "liveness-probe",
        "image": options.sidecars.livenessprobe,
        "args": [
            f"--csi-address={SOCKET_PATH}",
            f"--http-endpoint=0.0.0.0:{port}",
            "--probe-timeout=3s",
        ],
        "volumeMounts": [_socket_mount()],
        "resources": _resources("10m", "20Mi", "64Mi"),
    }


def _sidecar(name: str, image: str, args: list[str]) -> Obj:
    return {
        "name": name,
        "image": image,
        "args": [f"--csi-address={SOCKET_PATH}", "--v=2", *args],
        "volumeMounts": [_socket_mount()],
        "resources": _resources("10m", "32Mi", "256Mi"),
    }


# --------------------------------------------------------------------------- objects


def csi_driver(options: ManifestOptions) -> Obj:
    """The CSIDriver object; its spec is immutable, so switching attach modes recreates it."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": _meta(DRIVER_NAME),
        "spec": {
            "attachRequired": options.attach_required,
            "podInfoOnMount": False,
            "fsGroupPolicy": "File",
            "volumeLifecycleModes": ["Persistent"],
        },
    }


def _service_account(name: str, options: ManifestOptions, component: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, options.namespace, component),
    }


def _cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(name),
        "rules": rules,
    }


def _binding(kind: str, name: str, account: str, options: ManifestOptions) -> Obj:
    role_kind = "ClusterRole" if kind == "ClusterRoleBinding" else "Role"
    meta = _meta(name, options.namespace if kind == "RoleBinding" else None)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": options.namespace}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
    }


READ = ("get", "list", "watch")
EVENTS = ("get", "list", "watch", "create", "update", "patch")

SIDECAR_RULES: dict[str, list[Obj]] = {
    "provisioner": [
        _rule([""], ["persistentvolumes"], [*READ, "create", "patch", "delete"]),
        _rule([""], ["persistentvolumeclaims"], [*READ, "update"]),
        _rule(["storage.k8s.io"], ["storageclasses"], READ),
        _rule([""], ["events"], EVENTS),
        _rule(["snapshot.storage.k8s.io"], ["volumesnapshots"], ["get", "list"]),
        _rule(["snapshot.storage.k8s.io"], ["volumesnapshotcontents"], ["get", "list"]),
        _rule(["storage.k8s.io"], ["csinodes"], READ),
        _rule([""], ["nodes"], READ),
        _rule(["storage.k8s.io"], ["volumeattachments"], READ),
    ],
    "attacher": [
        _rule([""], ["persistentvolumes"], [*READ, "patch"]),
        _rule(["storage.k8s.io"], ["csinodes"], READ),
        _rule(["storage.k8s.io"], ["volumeattachments"], [*READ, "patch"]),
        _rule(["storage.k8s.io"], ["volumeattachments/status"], ["patch"]),
    ],
    "resizer": [
        _rule([""], ["persistentvolumes"], [*READ, "patch"]),
        _rule([""], ["persistentvolumeclaims"], READ),
        _rule([""], ["persistentvolumeclaims/status"], ["patch"]),
        _rule([""], ["events"], EVENTS),
        # ControllerModifyVolume: the resizer reads the class a PVC names to learn its parameters.
        _rule(["storage.k8s.io"], ["volumeattributesclasses"], READ),
    ],
    "snapshotter": [
        _rule([""], ["events"], EVENTS),
        _rule(["snapshot.storage.k8s.io"], ["volumesnapshotclasses"], READ),
        _rule(["snapshot.storage.k8s.io"], ["volumesnapshotcontents"], [*READ, "update", "patch"]),
        _rule(["snapshot.storage.k8s.io"], ["volumesnapshotcontents/status"], ["update", "patch"]),
    ],
}

LEADER_ELECTION_RULES = [
    _rule(
        ["coordination.k8s.io"], ["leases"], ["get", "watch", "list", "delete", "update", "create"]
    )
]

# The daemon drains in-flight calls for up to drain_timeout after SIGTERM; the kubelet's
# SIGKILL must come later, or a stage or attach is cut off just as draining would end.
TERMINATION_GRACE_S = int(Config().drain_timeout) + 15


def controller_sidecars(options: ManifestOptions) -> list[str]:
    """The sidecars the controller pod runs for these options, in container order."""
    names = ["provisioner"]
    if options.attach_required:
        names.append("attacher")
    names.append("resizer")
    if options.snapshots:
        names.append("snapshotter")
    return names


def rbac(options: ManifestOptions) -> list[Obj]:
    """One ServiceAccount per pod, one ClusterRole per sidecar, so each grant has a reason."""
    objs = [
        _service_account("csi-disk-controller", options, "controller"),
        _service_account("csi-disk-node", options, "node"),
    ]
    for sidecar in controller_sidecars(options):
        name = f"csi-disk-{sidecar}"
        objs.append(_cluster_role(name, SIDECAR_RULES[sidecar]))
        objs.append(_binding("ClusterRoleBinding", name, "csi-disk-controller", options))
    objs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("csi-disk-leader-election", options.namespace),
            "rules": LEADER_ELECTION_RULES,
        }
    )
    objs.append(_binding("RoleBinding", "csi-disk-leader-election", "csi-disk-controller", options))
    # The node pod gets no grants: neither the plugin nor its sidecars call the API server.
    return objs


def _controller_sidecar_containers(options: ManifestOptions) -> list[Obj]:
    timeout = f"--timeout={options.provisioner_timeout}"
    workers = options.worker_threads
    args: dict[str, tuple[str, list[str]]] = {
        "provisioner": (
            options.sidecars.provisioner,
            [
                "--feature-gates=Topology=true",
                "--strict-topology",
                "--extra-create-metadata",
                "--default-fstype=ext4",
                "--leader-election",
                f"--worker-threads={workers}",
                timeout,
            ],
        ),
        "attacher": (
            options.sidecars.attacher,
            ["--leader-election", f"--worker-threads={workers}", timeout],
        ),
        "resizer": (
            options.sidecars.resizer,
            [
                "--leader-election",
                f"--workers={workers}",
                "--handle-volume-inuse-error=false",
                # The driver offers MODIFY_VOLUME; csi-resizer 1.x leaves it unused unless asked.
                "--feature-gates=VolumeAttributesClass=true",
                timeout,
            ],
        ),
        "snapshotter": (
            options.sidecars.snapshotter,
            [
                "--leader-election",
                f"--worker-threads={workers}",
                "--extra-create-metadata",
                timeout,
            ],
        ),
    }
    return [
        _sidecar(f"csi-{name}", args[name][0], args[name][1])
        for name in controller_sidecars(options)
    ]


def controller_statefulset(options: ManifestOptions) -> Obj:
    """One controller replica: a StatefulSet never runs two pods of the same ordinal at once."""
    labels = _labels("controller")
    plugin: Obj = {
        "name": "csi-disk",
        "image": options.image,
        "command": ["csi-disk", "serve"],
        "args": _serve_args(options, "controller", options.controller_metrics_port),
        "ports": [
            {"name": "healthz", "containerPort": options.controller_health_port},
            {"name": "metrics", "containerPort": options.controller_metrics_port},
        ],
        "livenessProbe": _health_probe(),
        # The root filesystem is read-only; /tmp stays writable for libraries that need it.
        "volumeMounts": [_socket_mount(), {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
        "resources": _resources("50m", "128Mi", "512Mi"),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    env = _credential_env(options)
    if env:
        plugin["env"] = env
    containers = [
        plugin,
        *_controller_sidecar_containers(options),
        _livenessprobe(options, options.controller_health_port),
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta("csi-disk-controller", options.namespace, "controller"),
        "spec": {
            "serviceName": "csi-disk-controller",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "csi-disk-controller",
                    "priorityClassName": "system-cluster-critical",
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": containers,
                    "volumes": [
                        {"name": "socket-dir", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _host_volume(name: str, path: str, kind: str) -> Obj:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def node_daemonset(options: ManifestOptions) -> Obj:
    """The node plugin: privileged, on the host network so the metadata service answers."""
    labels = _labels("node")
    plugin: Obj = {
        "name": "csi-disk",
        "image": options.image,
        "command": ["csi-disk", "serve"],
        "args": _serve_args(options, "node", options.node_metrics_port),
        "ports": [
            {"name": "healthz", "containerPort": options.node_health_port},
            {"name": "metrics", "containerPort": options.node_metrics_port},
        ],
        "livenessProbe": _health_probe(),
        "securityContext": {"privileged": True, "runAsUser": 0},
        "volumeMounts": [
            _socket_mount(),
            {
                "name": "kubelet-dir",
                "mountPath": options.kubelet_dir,
                "mountPropagation": "Bidirectional",
            },
            {"name": "device-dir", "mountPath": "/dev"},
            {"name": "sys-dir", "mountPath": "/sys"},
            {"name": "udev-dir", "mountPath": "/run/udev", "readOnly": True},
        ],
        "resources": _resources("50m", "128Mi", "512Mi"),
    }
    # In controller attach mode the node never attaches, so it gets no AccessKey: its calls
    # are read-only and the instance RAM role covers them.
    env = _credential_env(options) if options.attach_mode == "node" else []
    if env:
        plugin["env"] = env
    registrar: Obj = {
        "name": "node-driver-registrar",
        "image": options.sidecars.node_driver_registrar,
        "args": [
            f"--csi-address={SOCKET_PATH}",
            f"--kubelet-registration-path={options.plugin_dir}/csi.sock",
            f"--http-endpoint=0.0.0.0:{options.registrar_health_port}",
            "--v=2",
        ],
        "ports": [{"name": "registrar", "containerPort": options.registrar_health_port}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "registrar"},
            "initialDelaySeconds": 5,
            "timeoutSeconds": 5,
        },
        "volumeMounts": [
            _socket_mount(),
            {"name": "registration-dir", "mountPath": "/registration"},
        ],
        "resources": _resources("10m", "20Mi", "64Mi"),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta("csi-disk-node", options.namespace, "node"),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "csi-disk-node",
                    # No container here talks to the API server; a privileged pod on every
                    # node should not carry a token that could.
                    "automountServiceAccountToken": False,
                    "priorityClassName": "system-node-critical",
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        plugin,
                        registrar,
                        _livenessprobe(options, options.node_health_port),
                    ],
                    "volumes": [
                        _host_volume("socket-dir", options.plugin_dir, "DirectoryOrCreate"),
                        _host_volume("registration-dir", options.registration_dir, "Directory"),
                        _host_volume("kubelet-dir", options.kubelet_dir, "Directory"),
                        _host_volume("device-dir", "/dev", "Directory"),
                        _host_volume("sys-dir", "/sys", "Directory"),
                        _host_volume("udev-dir", "/run/udev", "Directory"),
                    ],
                },
            },
        },
    }


def _metrics_service(name: str, component: str, port: int, options: ManifestOptions) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, options.namespace, component),
        "spec": {
            "clusterIP": "None",
            "selector": _labels(component),
            "ports": [{"name": "metrics", "port": port, "targetPort": "metrics"}],
        },
    }


def metrics_services(options: ManifestOptions) -> list[Obj]:
    """Headless Services Prometheus can discover; the controller one also names the StatefulSet."""
    return [
        _metrics_service(
            "csi-disk-controller", "controller", options.controller_metrics_port, options
        ),
        _metrics_service("csi-disk-node-metrics", "node", options.node_metrics_port, options),
    ]


def _storage_class(name: str, disk_type: str, binding: str) -> Obj:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": _meta(name),
        "provisioner": DRIVER_NAME,
        "parameters": {"type": disk_type},
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": True,
        "volumeBindingMode": binding,
    }


def storage_classes() -> list[Obj]:
    """Topology-aware classes first; Immediate ones per category for clusters that want them."""
    return [
        _storage_class("alicloud-disk-aware", "cloud_ssd", "WaitForFirstConsumer"),
        _storage_class(
            "alicloud-disk-topology",
            "cloud_essd,cloud_ssd,cloud_efficiency",
            "WaitForFirstConsumer",
        ),
        _storage_class("alicloud-disk-essd", "cloud_essd", "Immediate"),
        _storage_class("alicloud-disk-ssd", "cloud_ssd", "Immediate"),
        _storage_class("alicloud-disk-efficiency", "cloud_efficiency", "Immediate"),
    ]


def snapshot_class() -> Obj:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": _meta("alicloud-disk-snapshot"),
        "driver": DRIVER_NAME,
        "deletionPolicy": "Delete",
    }


def layout(options: ManifestOptions) -> dict[str, list[Obj]]:
    """File name -> objects of one install directory, in apply order."""
    return {
        "csidriver.yaml": [csi_driver(options)],
        "rbac.yaml": rbac(options),
        "controller.yaml": [controller_statefulset(options)],
        "node.yaml": [node_daemonset(options)],
        "metrics.yaml": metrics_services(options),
        "storageclasses.yaml": storage_classes(),
    }


# Applied separately: kubectl rejects the whole kustomization if the snapshot CRDs are absent.
SNAPSHOT_LAYOUT = {"volumesnapshotclass.yaml": [snapshot_class()]}


def render(options: ManifestOptions | None = None) -> list[Obj]:
    """Every object of the install for ``options``, the VolumeSnapshotClass last."""
    options = options or ManifestOptions()
    objs = [obj for group in layout(options).values() for obj in group]
    if options.snapshots:
        objs.extend(obj for group in SNAPSHOT_LAYOUT.values() for obj in group)
    return objs


# --------------------------------------------------------------------------- examples

EXAMPLE_DISK_ID = "d-bp1j4l5axzdy6ftk0hvs"
EXAMPLE_REGION = "cn-hangzhou"
EXAMPLE_ZONE = "cn-hangzhou-h"


def _pvc(name: str, size: str, storage_class: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": size}},
            **spec,
        },
    }


def _nginx(name: str, claim: str) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            # A ReadWriteOnce disk cannot be on two nodes during a rolling update.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        },
    }


# csi-resizer 1.x reads VolumeAttributesClasses through storage.k8s.io/v1beta1 (Kubernetes
# 1.31+ with that API enabled); the GA v1 API (1.34+) needs csi-resizer 2.x.
VOLUME_ATTRIBUTES_CLASS_API = "storage.k8s.io/v1beta1"


def _attributes_class(name: str, parameters: dict[str, str]) -> Obj:
    return {
        "apiVersion": VOLUME_ATTRIBUTES_CLASS_API,
        "kind": "VolumeAttributesClass",
        "metadata": _meta(name),
        "driverName": DRIVER_NAME,
        "parameters": parameters,
    }


def examples() -> dict[str, list[Obj]]:
    """Example workloads for ``deploy/examples/``: dynamic, static, resize, snapshot+restore,
    and a performance level change through VolumeAttributesClasses."""
    static_pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": "static-disk-pv",
            "labels": {
                "failure-domain.beta.kubernetes.io/zone": EXAMPLE_ZONE,
                "failure-domain.beta.kubernetes.io/region": EXAMPLE_REGION,
            },
        },
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "csi": {"driver": DRIVER_NAME, "volumeHandle": EXAMPLE_DISK_ID, "fsType": "ext4"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": [EXAMPLE_ZONE],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
    snapshot = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "disk-pvc-snapshot"},
        "spec": {
            "volumeSnapshotClassName": "alicloud-disk-snapshot",
            "source": {"persistentVolumeClaimName": "disk-pvc"},
        },
    }
    restored = _pvc(
        "disk-pvc-restored",
        "20Gi",
        "alicloud-disk-aware",
        dataSource={
            "name": "disk-pvc-snapshot",
            "kind": "VolumeSnapshot",
            "apiGroup": "snapshot.storage.k8s.io",
        },
    )
    return {
        "dynamic.yaml": [
            _pvc("disk-pvc", "20Gi", "alicloud-disk-aware"),
            _nginx("nginx-disk", "disk-pvc"),
        ],
        "static-pv.yaml": [
            static_pv,
            _pvc("static-disk-pvc", "20Gi", "", volumeName="static-disk-pv"),
        ],
        "resize.yaml": [_pvc("disk-pvc", "40Gi", "alicloud-disk-aware")],
        # Performance levels are an ESSD property: the claim uses the ESSD class. PL1 is what
        # ECS creates by default; patch the claim to the PL0 class to lower it online.
        "modify.yaml": [
            _attributes_class("alicloud-disk-pl1", {"performanceLevel": "PL1"}),
            _attributes_class("alicloud-disk-pl0", {"performanceLevel": "PL0"}),
            _pvc(
                "essd-pvc",
                "20Gi",
                "alicloud-disk-essd",
                volumeAttributesClassName="alicloud-disk-pl1",
            ),
        ],
        "snapshot-restore.yaml": [
            snapshot,
            restored,
            _nginx("nginx-disk-restored", "disk-pvc-restored"),
        ],
    }


# --------------------------------------------------------------------------- RAM policies

_ANY_TAG = "*"
_DISK = "acs:ecs:*:*:disk/*"
_SNAPSHOT = "acs:ecs:*:*:snapshot/*"
_INSTANCE = "acs:ecs:*:*:instance/*"
_RESOURCE_TAGGED = {"StringLike": {f"acs:ResourceTag/{VOLUME_NAME_TAG}": _ANY_TAG}}
_REQUEST_TAGGED = {"StringLike": {f"acs:RequestTag/{VOLUME_NAME_TAG}": _ANY_TAG}}


def _statement(
    actions: Sequence[str], resources: Sequence[str], condition: Obj | None = None
) -> Obj:
    stmt: Obj = {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}
    if condition:
        stmt["Condition"] = condition
    return stmt


def _attach_statements() -> list[Obj]:
    # AttachDisk/DetachDisk authorize the disk and the instance separately: the disk must carry
    # the driver's tag, the instance cannot (nodes are not tagged by the driver).
    return [
        _statement(["ecs:AttachDisk", "ecs:DetachDisk"], [_DISK], _RESOURCE_TAGGED),
        _statement(["ecs:AttachDisk", "ecs:DetachDisk"], [_INSTANCE]),
    ]


def ram_policies(attach_mode: str) -> dict[str, Obj]:
    """Least-privilege RAM policies, keyed ``controller``/``node``, for one attach mode."""
    if attach_mode not in ATTACH_MODES:
        raise ValueError(f"attach_mode must be one of {ATTACH_MODES}, not {attach_mode!r}")
    describe = _statement(
        ["ecs:DescribeDisks", "ecs:DescribeInstances", "ecs:DescribeInstanceTypes"], ["*"]
    )
    controller = [
        _statement(
            [
                "ecs:DescribeDisks",
                "ecs:DescribeInstances",
                "ecs:DescribeInstanceTypes",
                "ecs:DescribeSnapshots",
            ],
            ["*"],
        ),
        _statement(["ecs:CreateDisk", "ecs:TagResources"], [_DISK], _REQUEST_TAGGED),
        # Restoring from a snapshot also authorizes the snapshot it reads.
        _statement(["ecs:CreateDisk"], [_SNAPSHOT]),
        _statement(
            [
                "ecs:DeleteDisk",
                "ecs:ResizeDisk",
                "ecs:ModifyDiskSpec",
                "ecs:ModifyDiskAttribute",
                "ecs:CreateSnapshot",
            ],
            [_DISK],
            _RESOURCE_TAGGED,
        ),
        _statement(["ecs:CreateSnapshot", "ecs:DeleteSnapshot", "ecs:TagResources"], [_SNAPSHOT]),
    ]
    node = [describe]
    if attach_mode == "controller":
        controller.extend(_attach_statements())
    else:
        node.extend(_attach_statements())
        # DeleteVolume still releases a disk left on a stopped or released instance.
        controller.extend(
            [
                _statement(["ecs:DetachDisk"], [_DISK], _RESOURCE_TAGGED),
                _statement(["ecs:DetachDisk"], [_INSTANCE]),
            ]
        )
    return {
        "controller": {"Version": "1", "Statement": controller},
        "node": {"Version": "1", "Statement": node},
    }


# --------------------------------------------------------------------------- YAML writer

# Plain (unquoted) scalars are kept to a conservative alphabet; anything that starts like a
# number, date or YAML 1.1 boolean is quoted, so every reader sees a string.
_PLAIN = re.compile(r"[A-Za-z_./-][A-Za-z0-9_./:=@%+,$()-]*")
_NUMERIC_START = re.compile(r"[-+.]?[0-9]")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(inf|nan)", re.IGNORECASE)
_RESERVED = {"", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", "-", "="}


def _needs_quotes(text: str) -> bool:
    return (
        not _PLAIN.fullmatch(text)
        or text.lower() in _RESERVED
        or _NUMERIC_START.match(text) is not None
        or _SPECIAL_FLOAT.fullmatch(text) is not None
        or text.endswith(":")
    )


def _is_printable(ch: str) -> bool:
    code = ord(ch)
    return (
        0x20 <= code <= 0x7E
        or code == 0x85
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _is_printable(ch) and ch not in "\x85\u2028\u2029\ufeff":  # YAML line breaks, BOM
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value) if _needs_quotes(value) else value
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _is_block(value: Any) -> bool:
    return isinstance(value, dict | list | tuple) and len(value) > 0


def _block(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("mapping keys must be strings")
            if _is_block(item):
                lines.append(f"{pad}{_scalar(key)}:")
                lines.extend(_block(item, indent + 2))
            else:
                lines.append(f"{pad}{_scalar(key)}: {_scalar(item)}")
        return lines
    for item in value:
        if _is_block(item):
            inner = _block(item, indent + 2)
            lines.append(f"{pad}- {inner[0][indent + 2 :]}")
            lines.extend(inner[1:])
        else:
            lines.append(f"{pad}- {_scalar(item)}")
    return lines


def dump_yaml(objects: Iterable[Any]) -> str:
    """A multi-document YAML stream, byte-for-byte the same for the same input."""
    docs = []
    for obj in objects:
        body = _block(obj, 0) if _is_block(obj) else [_scalar(obj)]
        docs.append("\n".join(body) + "\n")
    return "---\n".join(docs)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


# --------------------------------------------------------------------------- files

GENERATED_HEADER = "# Generated by `python -m csi_disk.manifests --write-deploy`; do not edit.\n"


def _kustomization(resources: Sequence[str], namespace: str | None = None) -> str:
    doc: Obj = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        doc["namespace"] = namespace
    doc["resources"] = list(resources)
    return GENERATED_HEADER + dump_yaml([doc])


def install_files(options: ManifestOptions) -> dict[str, str]:
    """Relative path -> text of one kustomize directory (snapshot class under ``snapshot/``)."""
    files = layout(options)
    out = {name: GENERATED_HEADER + dump_yaml(objs) for name, objs in files.items()}
    out["kustomization.yaml"] = _kustomization(list(files))
    if options.snapshots:
        for name, objs in SNAPSHOT_LAYOUT.items():
            out[f"snapshot/{name}"] = GENERATED_HEADER + dump_yaml(objs)
        out["snapshot/kustomization.yaml"] = _kustomization(list(SNAPSHOT_LAYOUT))
    return out


def deploy_files(base: ManifestOptions | None = None) -> dict[str, str]:
    """Relative path (under ``deploy/``) -> text of the whole checked-in tree."""
    base = base or ManifestOptions()
    out: dict[str, str] = {}
    for mode in ATTACH_MODES:
        options = replace(base, attach_mode=mode)
        for name, text in install_files(options).items():
            if name.startswith("snapshot/"):
                out[f"kubernetes/{name}"] = text  # identical for both modes: kept once
            else:
                out[f"kubernetes/{mode}-attach/{name}"] = text
        for role, policy in ram_policies(mode).items():
            out[f"ram/{mode}-attach/{role}.json"] = dump_json(policy)
    out["kubernetes/kustomization.yaml"] = _kustomization([f"{ATTACH_MODES[0]}-attach"])
    for name, objs in examples().items():
        out[f"examples/{name}"] = dump_yaml(objs)
    return out


def write_files(root: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for rel, text in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def repo_deploy_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "deploy"


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``csi-disk manifests``."""
    defaults = ManifestOptions()
    parser.add_argument("--attach-mode", choices=ATTACH_MODES, default=defaults.attach_mode)
    parser.add_argument("--image", default=defaults.image, help="driver image, pinned by tag")
    parser.add_argument("--namespace", default=defaults.namespace)
    parser.add_argument("--credentials", choices=CREDENTIALS, default=defaults.credentials)
    parser.add_argument("--provisioner-timeout", default=defaults.provisioner_timeout)
    parser.add_argument("--worker-threads", type=int, default=defaults.worker_threads)
    parser.add_argument("--kubelet-dir", default=defaults.kubelet_dir)
    parser.add_argument(
        "--no-snapshots",
        dest="snapshots",
        action="store_false",
        help="leave out csi-snapshotter and the VolumeSnapshotClass",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="write a kustomize directory here instead of printing YAML",
    )


def options_from_args(args: argparse.Namespace) -> ManifestOptions:
    return ManifestOptions(
        attach_mode=args.attach_mode,
        image=args.image,
        namespace=args.namespace,
        credentials=args.credentials,
        provisioner_timeout=args.provisioner_timeout,
        worker_threads=args.worker_threads,
        kubelet_dir=args.kubelet_dir.rstrip("/") or "/",
        snapshots=args.snapshots,
    )


def run(args: argparse.Namespace) -> int:
    """Print the install as YAML, or write it as a kustomize directory."""
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"csi-disk manifests: {exc}", file=sys.stderr)
        return 2
    if args.output_dir is None:
        sys.stdout.write(dump_yaml(render(options)))
        return 0
    for path in write_files(args.output_dir, install_files(options)):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m csi_disk.manifests", description="Render csi-disk's Kubernetes install."
    )
    add_arguments(parser)
    parser.add_argument(
        "--write-deploy",
        action="store_true",
        help="regenerate the checked-in deploy/ tree (Kubernetes, RAM policies, examples)",
    )
    args = parser.parse_args(argv)
    if args.write_deploy:
        for path in write_files(repo_deploy_dir(), deploy_files()):
            print(path)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
