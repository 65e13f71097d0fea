"""deploy/: the kustomize base (node attach mode) and the controller-attach overlay, built by the
real ``kubectl kustomize``, are schema-valid, internally consistent and least-privilege; every
flag a container passes is one its program knows; the RAM policies and examples fit them."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from csi_disk import DRIVER_NAME
from csi_disk.config import Config
from csi_disk.modification import parse_mutable
from csi_disk.tokens import VOLUME_NAME_TAG
from tests.programs import (
    go_tool_bin,
    go_tool_version,
    help_options,
    serve_env,
    serve_flags,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUSTOMIZE = DEPLOY / "kubernetes"

# Attach mode -> the directory an operator applies for it.
VARIANTS = {"node": KUSTOMIZE, "controller": KUSTOMIZE / "controller-attach"}
MODES = tuple(VARIANTS)

# Kubernetes releases the install must be valid for: the oldest docs/install.md supports and
# the newest schema set kubernetes-validate ships (read at run time, so an upgrade widens it).
OLDEST_KUBERNETES = "1.30"
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version())
# VolumeAttributesClass is storage.k8s.io/v1 from this release on.
V1_ATTRIBUTES_CLASS_KUBERNETES = "1.34"

# Sidecars built from .ci/go (tool, program and container share the name) -> the Go module
# whose pinned version is the image tag.
BUILT_SIDECARS = {
    "csi-provisioner": "github.com/kubernetes-csi/external-provisioner/v6",
    "csi-attacher": "github.com/kubernetes-csi/external-attacher/v4",
    "csi-resizer": "github.com/kubernetes-csi/external-resizer/v2",
    "csi-snapshotter": "github.com/kubernetes-csi/external-snapshotter/v8",
}
# Not built here: their tags are pinned by hand, their flags checked by a real cluster.
UNBUILT_SIDECARS = {"liveness-probe": "v2.", "node-driver-registrar": "v2."}

# What each sidecar needs from the API server: (apiGroup, resource, verb). Upstream's RBAC for
# the pinned versions, less what the flags used here switch off.
SIDECAR_NEEDS: dict[str, set[tuple[str, str, str]]] = {
    "provisioner": {
        ("", "persistentvolumes", "create"),
        ("", "persistentvolumes", "delete"),
        ("", "persistentvolumes", "get"),
        ("", "persistentvolumes", "list"),
        ("", "persistentvolumes", "watch"),
        ("", "persistentvolumeclaims", "get"),
        ("", "persistentvolumeclaims", "list"),
        ("", "persistentvolumeclaims", "watch"),
        ("", "persistentvolumeclaims", "update"),
        ("storage.k8s.io", "storageclasses", "get"),
        ("storage.k8s.io", "storageclasses", "list"),
        ("storage.k8s.io", "storageclasses", "watch"),
        ("", "events", "create"),
        ("", "events", "patch"),
        ("storage.k8s.io", "csinodes", "get"),
        ("storage.k8s.io", "csinodes", "list"),
        ("storage.k8s.io", "csinodes", "watch"),
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("storage.k8s.io", "volumeattachments", "get"),
        ("storage.k8s.io", "volumeattachments", "list"),
        ("storage.k8s.io", "volumeattachments", "watch"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "list"),
        # v6: a finalizer on the snapshot a volume is being restored from.
        ("snapshot.storage.k8s.io", "volumesnapshots", "watch"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "update"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "list"),
        # v6: a claim's VolumeAttributesClass goes with CreateVolume.
        ("storage.k8s.io", "volumeattributesclasses", "get"),
    },
    "attacher": {
        ("", "persistentvolumes", "get"),
        ("", "persistentvolumes", "list"),
        ("", "persistentvolumes", "watch"),
        ("storage.k8s.io", "volumeattachments", "get"),
        ("storage.k8s.io", "volumeattachments", "list"),
        ("storage.k8s.io", "volumeattachments", "watch"),
        ("storage.k8s.io", "volumeattachments", "patch"),
        ("storage.k8s.io", "volumeattachments/status", "patch"),
        ("storage.k8s.io", "csinodes", "get"),
    },
    "resizer": {
        ("", "persistentvolumes", "get"),
        ("", "persistentvolumes", "patch"),
        ("", "persistentvolumeclaims", "get"),
        ("", "persistentvolumeclaims", "list"),
        ("", "persistentvolumeclaims", "watch"),
        ("", "persistentvolumeclaims/status", "patch"),
        ("", "events", "create"),
        # ControllerModifyVolume: the class a PVC names carries the parameters.
        ("storage.k8s.io", "volumeattributesclasses", "get"),
        ("storage.k8s.io", "volumeattributesclasses", "list"),
        ("storage.k8s.io", "volumeattributesclasses", "watch"),
    },
    "snapshotter": {
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", "list"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "list"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "watch"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "update"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "patch"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", "update"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", "patch"),
        ("", "events", "create"),
    },
}
LEADER_ELECTION_NEEDS = {
    ("coordination.k8s.io", "leases", verb) for verb in ("get", "watch", "list", "create", "update")
}

Obj = dict[str, Any]


# --------------------------------------------------------------------------- building


def kubectl() -> Path:
    return go_tool_bin("kubernetes") / "kubectl"


def kustomize(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize`` builds from ``directory``."""
    built = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, f"kubectl kustomize {directory}: {built.stderr.strip()}"
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@functools.cache
def _built(mode: str) -> tuple[Obj, ...]:
    return tuple(kustomize(VARIANTS[mode]))


def objects(mode: str) -> list[Obj]:
    """A fresh copy of the install for ``mode``, built once per run."""
    return copy.deepcopy(list(_built(mode)))


@functools.cache
def _snapshot_objects() -> tuple[Obj, ...]:
    return tuple(kustomize(KUSTOMIZE / "snapshot"))


def load_yaml(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def examples() -> dict[str, list[Obj]]:
    return {p.name: load_yaml(p) for p in sorted((DEPLOY / "examples").glob("*.yaml"))}


def ram_policy(mode: str, role: str) -> Obj:
    return json.loads((DEPLOY / "ram" / f"{mode}-attach" / f"{role}.json").read_text())


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("StatefulSet", "DaemonSet", "Deployment")]


def containers(workload: Obj) -> dict[str, Obj]:
    return {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}


def arg_value(container: Obj, flag: str) -> str:
    values = [a.split("=", 1)[1] for a in container.get("args", []) if a.startswith(flag + "=")]
    assert len(values) == 1, f"{container['name']}: expected one {flag}=..., got {values}"
    return values[0]


def env_value(container: Obj, name: str) -> str:
    values = [e["value"] for e in container.get("env", []) if e["name"] == name]
    assert len(values) == 1, f"{container['name']}: expected one {name}, got {values}"
    return values[0]


def plugins(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, csi-disk container) for each workload running the driver."""
    for workload in workloads(objs):
        for container in containers(workload).values():
            if container.get("command", [])[:1] == ["csi-disk"]:
                assert container["command"] == ["csi-disk", "serve"]
                yield workload, container


def granted(rules: list[Obj]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def rules_bound_to(objs: list[Obj], account: str) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for binding in (o for o in objs if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        if any(s["name"] == account for s in binding["subjects"]):
            ref = binding["roleRef"]
            out |= granted(find(objs, ref["kind"], ref["name"])["rules"])
    return out


def key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


# --------------------------------------------------------------------------- kustomize


def test_every_kustomization_builds_and_the_default_is_the_base() -> None:
    directories = sorted(p.parent for p in KUSTOMIZE.rglob("kustomization.yaml"))
    assert [d.relative_to(KUSTOMIZE).as_posix() for d in directories] == [
        ".",
        "base",
        "controller-attach",
        "snapshot",
    ]
    for directory in directories:
        assert kustomize(directory), directory
    # `kubectl apply -k deploy/kubernetes/` is the base, node attach mode.
    assert kustomize(KUSTOMIZE / "base") == objects("node")


def test_kustomizations_use_every_file_beside_them() -> None:
    for path in KUSTOMIZE.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "Kustomization"
        used = set(doc.get("resources", [])) | {p["path"] for p in doc.get("patches", [])}
        files = {p.name for p in path.parent.iterdir() if p.is_file()} - {"kustomization.yaml"}
        assert {u for u in used if (path.parent / u).is_file()} == files, path


def test_controller_attach_overlay_is_a_small_patch_set() -> None:
    overlay = yaml.safe_load((VARIANTS["controller"] / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../base", "attacher.yaml"]
    base = {key(o): o for o in objects("node")}
    other = {key(o): o for o in objects("controller")}
    assert set(base) - set(other) == set()
    assert set(other) - set(base) == {
        ("ClusterRole", "csi-disk-attacher"),
        ("ClusterRoleBinding", "csi-disk-attacher"),
    }
    changed = {k for k in base if base[k] != other[k]}
    assert changed == {
        ("CSIDriver", DRIVER_NAME),
        ("StatefulSet", "csi-disk-controller"),
        ("DaemonSet", "csi-disk-node"),
    }
    # Within those, only the attach mode, the attacher and the nodes' AccessKey differ.
    for k in changed - {("CSIDriver", DRIVER_NAME)}:
        for objs in (base, other):
            spec = objs[k]["spec"]["template"]["spec"]
            spec["containers"] = [c for c in spec["containers"] if c["name"] != "csi-attacher"]
            for c in spec["containers"]:
                c.pop("env", None)
        assert base[k] == other[k], k
    base[("CSIDriver", DRIVER_NAME)]["spec"].pop("attachRequired")
    other[("CSIDriver", DRIVER_NAME)]["spec"].pop("attachRequired")
    assert base[("CSIDriver", DRIVER_NAME)] == other[("CSIDriver", DRIVER_NAME)]


def test_the_install_guides_own_overlay_builds(tmp_path: Path) -> None:
    # docs/install.md's overlay: another namespace, the driver image from one's registry, and
    # the patch that drops csi-snapshotter, as written there.
    guide = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(# my-install/kustomization\.yaml.*?)```", guide, re.DOTALL)
    assert len(blocks) == 2, "docs/install.md: the overlay example and its patch"
    overlay = yaml.safe_load(blocks[0])
    overlay.update(yaml.safe_load(blocks[1]))
    (variant,) = overlay["resources"]
    assert (REPO / "my-install" / variant).resolve() == VARIANTS["controller"]
    overlay["resources"] = [os.path.relpath(VARIANTS["controller"], tmp_path)]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    objs = kustomize(tmp_path)

    namespaced = [o for o in objs if "namespace" in o["metadata"]]
    assert namespaced and {o["metadata"]["namespace"] for o in namespaced} == {"storage"}
    for binding in (o for o in objs if o["kind"].endswith("Binding")):
        assert {s["namespace"] for s in binding["subjects"]} == {"storage"}
    for _, plugin in plugins(objs):
        assert plugin["image"] == "registry.example.com/csi-disk:0.1.0"
    controller = containers(find(objs, "StatefulSet", "csi-disk-controller"))
    assert "csi-snapshotter" not in controller and "csi-attacher" in controller


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("mode", MODES)
def test_every_object_is_valid_for_kubernetes(mode: str, version: str) -> None:
    for obj in objects(mode):
        kubernetes_validate.validate(obj, version, strict=True)


def test_validator_is_strict_enough_to_catch_a_typo() -> None:
    daemonset = find(objects("node"), "DaemonSet", "csi-disk-node")
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSIONS[-1], strict=True)


def test_snapshot_class_structure() -> None:
    # A CRD kind, outside the built-in schemas: checked field by field.
    (snapclass,) = _snapshot_objects()
    assert snapclass["kind"] == "VolumeSnapshotClass"
    assert snapclass["metadata"]["name"] == "alicloud-disk-snapshot"
    assert snapclass["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert snapclass["driver"] == DRIVER_NAME
    assert snapclass["deletionPolicy"] in ("Delete", "Retain")
    assert set(snapclass) == {"apiVersion", "kind", "metadata", "driver", "deletionPolicy"}


def test_examples_are_valid() -> None:
    for name, objs in examples().items():
        assert objs, name
        for obj in objs:
            if obj["kind"] == "VolumeSnapshot":
                assert obj["apiVersion"] == "snapshot.storage.k8s.io/v1"
                assert set(obj["spec"]) == {"volumeSnapshotClassName", "source"}
                continue
            versions = KUBERNETES_VERSIONS
            if obj["kind"] == "VolumeAttributesClass" or "volumeAttributesClassName" in obj.get(
                "spec", {}
            ):
                versions = (V1_ATTRIBUTES_CLASS_KUBERNETES, KUBERNETES_VERSIONS[-1])
            for version in versions:
                kubernetes_validate.validate(obj, version, strict=True)


def test_attributes_class_example_is_one_the_driver_accepts() -> None:
    objs = examples()["modify.yaml"]
    classes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "VolumeAttributesClass"}
    (claim,) = (o for o in objs if o["kind"] == "PersistentVolumeClaim")
    assert classes
    # csi-resizer v2 modifies volumes without a gate, reading the GA API only.
    resizer = containers(find(objects("node"), "StatefulSet", "csi-disk-controller"))["csi-resizer"]
    assert int(resizer["image"].rpartition(":v")[2].split(".")[0]) >= 2
    assert not any(a.startswith("--feature-gates") for a in resizer["args"])
    for vac in classes.values():
        assert vac["apiVersion"] == "storage.k8s.io/v1"
        assert vac["driverName"] == DRIVER_NAME
        change = parse_mutable(vac["parameters"])  # what ControllerModifyVolume will get
        assert change.performance_level == vac["parameters"]["performanceLevel"]
    assert {c["parameters"]["performanceLevel"] for c in classes.values()} >= {"PL1"}
    assert claim["spec"]["volumeAttributesClassName"] in classes
    # Performance levels exist on ESSD only: the claim must come from an ESSD class.
    storage = find(objects("node"), "StorageClass", claim["spec"]["storageClassName"])
    assert storage["parameters"]["type"] == "cloud_essd"


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("mode", MODES)
def test_images_are_pinned_by_tag(mode: str) -> None:
    for workload in workloads(objects(mode)):
        for container in containers(workload).values():
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, image
            assert tag and tag != "latest", image
            if container["name"] != "csi-disk":
                assert image.startswith("registry.k8s.io/sig-storage/"), image
                assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), image


def test_sidecar_tags_are_the_versions_built_here() -> None:
    controller = containers(find(objects("controller"), "StatefulSet", "csi-disk-controller"))
    node = containers(find(objects("node"), "DaemonSet", "csi-disk-node"))
    sidecars = {**controller, **node}
    for name, module in BUILT_SIDECARS.items():
        tag = sidecars[name]["image"].rpartition(":")[2]
        assert tag == go_tool_version(name, module), name
    for name, major in UNBUILT_SIDECARS.items():
        assert sidecars[name]["image"].rpartition(":")[2].startswith(major), name


def test_image_tag_follows_project_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for mode in MODES:
        for _, plugin in plugins(objects(mode)):
            assert plugin["image"] == f"csi-disk:{project['version']}"


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize("sidecar", sorted(BUILT_SIDECARS))
def test_sidecar_args_are_flags_of_the_pinned_binary(sidecar: str) -> None:
    shown = subprocess.run(
        [str(go_tool_bin(sidecar) / sidecar), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    text = shown.stdout + shown.stderr  # Go's flag package prints help on stderr
    known = help_options(text)
    assert {"csi-address", "timeout", "leader-election"} <= known, text[:2000]
    passed = [
        c
        for mode in MODES
        for w in workloads(objects(mode))
        for name, c in containers(w).items()
        if name == sidecar
    ]
    assert passed, f"no {sidecar} container in any variant"
    for container in passed:
        for arg in container["args"]:
            assert arg.startswith("--"), arg
            flag, _, value = arg.removeprefix("--").partition("=")
            assert flag in known, f"{sidecar} does not know --{flag}"
            if flag == "feature-gates":
                # A gate gone GA is hidden from --help and removed in a later release.
                for gate in value.split(","):
                    name = gate.partition("=")[0]
                    assert re.search(rf"^\s+{name}=true\|false", text, re.MULTILINE), gate


def test_serve_flags_are_ones_csi_disk_serve_knows() -> None:
    accepted = serve_flags()
    assert {"--endpoint", "--attach-mode", "--kubelet-dir"} <= accepted
    for mode in MODES:
        seen: set[str] = set()
        for workload, plugin in plugins(objects(mode)):
            for arg in plugin["args"]:
                assert arg.startswith("--"), arg
                flag = arg.partition("=")[0]
                assert flag in accepted, (workload["metadata"]["name"], flag)
                seen.add(flag)
            settings = {e["name"] for e in plugin["env"] if e["name"].startswith("CSI_DISK_")}
            assert settings <= {serve_env(f) for f in accepted}, settings
            assert {"CSI_DISK_ATTACH_MODE"} <= settings
        # Both components really are configured, not just one.
        assert {"--mode", "--endpoint", "--driver-name"} <= seen


@pytest.mark.parametrize("mode", MODES)
def test_csidriver_matches_attach_mode(mode: str) -> None:
    objs = objects(mode)
    driver = find(objs, "CSIDriver", DRIVER_NAME)["spec"]
    assert driver["attachRequired"] is (mode == "controller")
    assert driver["fsGroupPolicy"] == "File"
    assert driver["podInfoOnMount"] is False
    assert driver["volumeLifecycleModes"] == ["Persistent"]
    components = set()
    for _, plugin in plugins(objs):
        # The environment sets it; a flag would win over it, so there must be none.
        assert not any(a.startswith("--attach-mode") for a in plugin["args"])
        assert env_value(plugin, "CSI_DISK_ATTACH_MODE") == mode
        assert arg_value(plugin, "--driver-name") == DRIVER_NAME
        components.add(arg_value(plugin, "--mode"))
    assert components == {"controller", "node"}
    controller = containers(find(objs, "StatefulSet", "csi-disk-controller"))
    assert ("csi-attacher" in controller) is (mode == "controller")


@pytest.mark.parametrize("mode", MODES)
def test_driver_name_is_the_same_everywhere(mode: str) -> None:
    objs = objects(mode)
    for obj in objs:
        if obj["kind"] == "StorageClass":
            assert obj["provisioner"] == DRIVER_NAME
    for obj in _snapshot_objects():
        assert obj["driver"] == DRIVER_NAME
    for name, example in examples().items():
        for obj in example:
            if obj["kind"] == "PersistentVolume":
                assert obj["spec"]["csi"]["driver"] == DRIVER_NAME, name
            if obj["kind"] == "VolumeAttributesClass":
                assert obj["driverName"] == DRIVER_NAME, name
    node = containers(find(objs, "DaemonSet", "csi-disk-node"))
    registration = arg_value(node["node-driver-registrar"], "--kubelet-registration-path")
    assert f"/plugins/{DRIVER_NAME}/" in registration


@pytest.mark.parametrize("mode", MODES)
def test_node_socket_paths_line_up(mode: str) -> None:
    daemonset = find(objects(mode), "DaemonSet", "csi-disk-node")
    spec = daemonset["spec"]["template"]["spec"]
    by_name = containers(daemonset)
    volumes = {v["name"]: v for v in spec["volumes"]}
    kubelet_dir = arg_value(by_name["csi-disk"], "--kubelet-dir")

    endpoint = arg_value(by_name["csi-disk"], "--endpoint")
    assert endpoint.startswith("unix://")
    socket = endpoint.removeprefix("unix://")
    assert arg_value(by_name["node-driver-registrar"], "--csi-address") == socket
    assert arg_value(by_name["liveness-probe"], "--csi-address") == socket

    # Every container sees the socket directory at the same path, backed by the host dir
    # kubelet is told about.
    socket_dir = str(Path(socket).parent)
    host_socket_dir = volumes["socket-dir"]["hostPath"]["path"]
    for container in by_name.values():
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["socket-dir"] == socket_dir, container["name"]
    registration = arg_value(by_name["node-driver-registrar"], "--kubelet-registration-path")
    assert registration == f"{kubelet_dir}/plugins/{DRIVER_NAME}/csi.sock"
    assert registration == f"{host_socket_dir}/{Path(socket).name}"
    assert volumes["registration-dir"]["hostPath"]["path"] == f"{kubelet_dir}/plugins_registry"
    assert volumes["kubelet-dir"]["hostPath"]["path"] == kubelet_dir


def test_node_plugin_host_access() -> None:
    daemonset = find(objects("node"), "DaemonSet", "csi-disk-node")
    spec = daemonset["spec"]["template"]["spec"]
    plugin = containers(daemonset)["csi-disk"]
    assert spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    assert daemonset["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "10%"},
    }
    assert plugin["securityContext"]["privileged"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    mounts = {m["name"]: m for m in plugin["volumeMounts"]}
    assert mounts["kubelet-dir"]["mountPropagation"] == "Bidirectional"
    assert host_paths[mounts["kubelet-dir"]["name"]] == mounts["kubelet-dir"]["mountPath"]
    for path in ("/dev", "/sys", "/run/udev"):
        assert any(host_paths[m["name"]] == path == m["mountPath"] for m in mounts.values()), path


@pytest.mark.parametrize("mode", MODES)
def test_every_container_has_requests_and_a_memory_limit(mode: str) -> None:
    for workload in workloads(objects(mode)):
        for container in containers(workload).values():
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"]
            # No CPU limit: throttling a storage plugin stalls mounts.
            assert set(resources["limits"]) == {"memory"}, container["name"]


def test_controller_runs_as_non_root_with_sidecar_flags() -> None:
    statefulset = find(objects("controller"), "StatefulSet", "csi-disk-controller")
    spec = statefulset["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec.get("hostNetwork") is not True
    by_name = containers(statefulset)
    provisioner = by_name["csi-provisioner"]["args"]
    for flag in (
        "--strict-topology",
        "--extra-create-metadata",
        "--default-fstype=ext4",
        "--leader-election",
        "--worker-threads=100",
        "--timeout=300s",
    ):
        assert flag in provisioner
    # Cloud disks take tens of seconds: every sidecar that calls the driver waits long enough.
    for name in ("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter"):
        assert arg_value(by_name[name], "--timeout") == "300s", name
        assert "--leader-election" in by_name[name]["args"], name
    socket = arg_value(by_name["csi-disk"], "--endpoint").removeprefix("unix://")
    for name, container in by_name.items():
        if name != "csi-disk":
            assert arg_value(container, "--csi-address") == socket, name
        assert container["volumeMounts"][0] == {"name": "socket-dir", "mountPath": "/csi"}
    assert {"name": "socket-dir", "emptyDir": {}} in spec["volumes"]


@pytest.mark.parametrize("mode", MODES)
def test_health_and_metrics_ports_line_up(mode: str) -> None:
    objs = objects(mode)
    for workload, plugin in plugins(objs):
        by_name = containers(workload)
        ports = {p["name"]: p["containerPort"] for p in plugin["ports"]}
        endpoint = arg_value(by_name["liveness-probe"], "--http-endpoint")
        assert int(endpoint.rsplit(":", 1)[1]) == ports["healthz"]
        assert plugin["livenessProbe"]["httpGet"]["port"] == "healthz"
        metrics = arg_value(plugin, "--metrics-address")
        assert int(metrics.rsplit(":", 1)[1]) == ports["metrics"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        services = [
            o
            for o in objs
            if o["kind"] == "Service" and o["spec"]["selector"].items() <= labels.items()
        ]
        assert len(services) == 1, workload["metadata"]["name"]
        (port,) = services[0]["spec"]["ports"]
        assert port["port"] == ports["metrics"] and port["targetPort"] == "metrics"
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # hostNetwork pods on one node share ports: every port in the pod is distinct.
        numbers = [p["containerPort"] for c in by_name.values() for p in c.get("ports", [])]
        assert len(numbers) == len(set(numbers))
    statefulset = find(objs, "StatefulSet", "csi-disk-controller")
    find(objs, "Service", statefulset["spec"]["serviceName"])


@pytest.mark.parametrize("mode", MODES)
def test_credentials_come_from_an_optional_secret(mode: str) -> None:
    for workload, plugin in plugins(objects(mode)):
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        env = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in plugin.get("env", [])
            if "valueFrom" in e
        }
        # Controller attach mode keeps AccessKeys off the nodes.
        expect_keys = component == "controller" or mode == "node"
        assert bool(env) is expect_keys, workload["metadata"]["name"]
        if expect_keys:
            assert set(env) == {"ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"}
            assert all(ref["optional"] is True for ref in env.values())
            assert {ref["name"] for ref in env.values()} == {"csi-disk-credentials"}


@pytest.mark.parametrize("mode", MODES)
def test_kubelet_waits_for_the_drain_before_killing(mode: str) -> None:
    for workload, plugin in plugins(objects(mode)):
        flagged = [a for a in plugin["args"] if a.startswith("--drain-timeout=")]
        drain = float(arg_value(plugin, "--drain-timeout")) if flagged else Config().drain_timeout
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        # Kubernetes' default 30 s equals the drain timeout: SIGKILL would land as draining
        # ends. Leave room for the process to exit after the drain, too.
        assert grace >= drain + 10, workload["metadata"]["name"]


# --------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("mode", MODES)
def test_each_sidecar_role_covers_what_it_needs(mode: str) -> None:
    objs = objects(mode)
    controller = containers(find(objs, "StatefulSet", "csi-disk-controller"))
    sidecars = [n.removeprefix("csi-") for n in controller]
    sidecars = [s for s in sidecars if s in SIDECAR_NEEDS]
    assert ("attacher" in sidecars) is (mode == "controller")
    assert {"provisioner", "resizer", "snapshotter"} <= set(sidecars)
    for sidecar in sidecars:
        role = find(objs, "ClusterRole", f"csi-disk-{sidecar}")
        missing = SIDECAR_NEEDS[sidecar] - granted(role["rules"])
        assert not missing, (sidecar, missing)
        binding = find(objs, "ClusterRoleBinding", f"csi-disk-{sidecar}")
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert [s["name"] for s in binding["subjects"]] == ["csi-disk-controller"]
    assert rules_bound_to(objs, "csi-disk-controller") >= LEADER_ELECTION_NEEDS
    leases = find(objs, "Role", "csi-disk-leader-election")
    assert leases["metadata"]["namespace"] == "kube-system"


CAPACITY_NEEDS = {
    ("storage.k8s.io", "csistoragecapacities", verb)
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
} | {("", "pods", "get")}  # the provisioner's own pod, to find its StatefulSet as owner


@pytest.mark.parametrize("mode", MODES)
def test_capacity_tracking_is_wired_end_to_end(mode: str) -> None:
    """GET_CAPACITY reaches the scheduler only with all of it: the provisioner's flag and
    the env it needs, CSIStorageCapacity RBAC in its namespace, and the CSIDriver's opt-in."""
    objs = objects(mode)
    statefulset = find(objs, "StatefulSet", "csi-disk-controller")
    provisioner = containers(statefulset)["csi-provisioner"]
    assert "--enable-capacity" in provisioner["args"]
    assert arg_value(provisioner, "--capacity-ownerref-level") == "1"  # the StatefulSet
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in provisioner["env"]}
    assert fields == {"POD_NAME": "metadata.name", "NAMESPACE": "metadata.namespace"}
    assert rules_bound_to(objs, "csi-disk-controller") >= CAPACITY_NEEDS
    role = find(objs, "Role", "csi-disk-capacity")
    assert role["metadata"]["namespace"] == statefulset["metadata"]["namespace"]
    assert find(objs, "CSIDriver", DRIVER_NAME)["spec"]["storageCapacity"] is True


@pytest.mark.parametrize("mode", MODES)
def test_rbac_is_least_privilege(mode: str) -> None:
    objs = objects(mode)
    for role in (o for o in objs if o["kind"] in ("ClusterRole", "Role")):
        for group, resource, verb in granted(role["rules"]):
            assert "*" not in (group, resource, verb), role["metadata"]["name"]
            assert resource != "secrets", role["metadata"]["name"]
    # Nothing in the node pod calls the API server, so its account is granted nothing.
    assert rules_bound_to(objs, "csi-disk-node") == set()
    # Only the attacher may write VolumeAttachments, and it only runs in controller mode.
    writes_attachments = any(
        resource.startswith("volumeattachments") and verb == "patch"
        for _, resource, verb in rules_bound_to(objs, "csi-disk-controller")
    )
    assert writes_attachments is (mode == "controller")


@pytest.mark.parametrize("mode", MODES)
def test_node_pods_carry_no_api_token(mode: str) -> None:
    objs = objects(mode)
    node = find(objs, "DaemonSet", "csi-disk-node")["spec"]["template"]["spec"]
    assert node["automountServiceAccountToken"] is False
    assert not any(
        s["name"] == "csi-disk-node"
        for b in objs
        if b["kind"].endswith("Binding")
        for s in b["subjects"]
    )
    # The controller's sidecars do need their token.
    controller = find(objs, "StatefulSet", "csi-disk-controller")["spec"]["template"]["spec"]
    assert controller.get("automountServiceAccountToken", True) is True


def test_driver_code_has_no_kubernetes_client() -> None:
    # What lets the node pod run without a token: no module talks to the API server.
    pattern = re.compile(r"^\s*(import|from)\s+kubernetes\b", re.MULTILINE)
    users = [
        str(path.relative_to(REPO))
        for path in (REPO / "csi_disk").rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert users == []


@pytest.mark.parametrize("mode", MODES)
def test_every_binding_points_at_a_role_and_account(mode: str) -> None:
    objs = objects(mode)
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    for binding in (o for o in objs if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        find(objs, binding["roleRef"]["kind"], binding["roleRef"]["name"])
        assert {s["name"] for s in binding["subjects"]} <= accounts
    for workload in workloads(objs):
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] in accounts


# --------------------------------------------------------------------------- storage classes


def test_storage_classes() -> None:
    classes = {o["metadata"]["name"]: o for o in objects("node") if o["kind"] == "StorageClass"}
    assert classes["alicloud-disk-aware"]["parameters"] == {"type": "cloud_ssd"}
    assert classes["alicloud-disk-topology"]["parameters"]["type"] == (
        "cloud_essd,cloud_ssd,cloud_efficiency"
    )
    for name in ("alicloud-disk-aware", "alicloud-disk-topology"):
        assert classes[name]["volumeBindingMode"] == "WaitForFirstConsumer"
    for category in ("essd", "ssd", "efficiency"):
        sc = classes[f"alicloud-disk-{category}"]
        assert sc["volumeBindingMode"] == "Immediate"
        assert sc["parameters"]["type"] == f"cloud_{category}"
    for sc in classes.values():
        assert sc["apiVersion"] == "storage.k8s.io/v1"
        assert sc["allowVolumeExpansion"] is True
        assert sc["reclaimPolicy"] == "Delete"


def test_examples_reference_what_the_install_provides() -> None:
    classes = {o["metadata"]["name"] for o in objects("node") if o["kind"] == "StorageClass"}
    snapshot_classes = {o["metadata"]["name"] for o in _snapshot_objects()}
    found = examples()
    assert set(found) == {
        "dynamic.yaml",
        "modify.yaml",
        "resize.yaml",
        "snapshot-restore.yaml",
        "static-pv.yaml",
    }
    dynamic = {o["kind"]: o for o in found["dynamic.yaml"]}
    pvc = dynamic["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "disk-pvc"
    assert pvc["spec"]["storageClassName"] == "alicloud-disk-aware" in classes
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    pod = dynamic["Deployment"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "disk-pvc"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/data"
    assert dynamic["Deployment"]["metadata"]["name"] == "nginx-disk"

    (resized,) = found["resize.yaml"]
    assert resized["metadata"]["name"] == "disk-pvc"
    assert resized["spec"]["storageClassName"] == pvc["spec"]["storageClassName"]
    assert resized["spec"]["resources"]["requests"]["storage"] != "20Gi"

    snapshot, restored, deployment = found["snapshot-restore.yaml"]
    assert snapshot["spec"]["volumeSnapshotClassName"] in snapshot_classes
    assert snapshot["spec"]["source"]["persistentVolumeClaimName"] == "disk-pvc"
    assert restored["spec"]["dataSource"]["name"] == snapshot["metadata"]["name"]
    assert restored["spec"]["storageClassName"] in classes
    claim = deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert claim["claimName"] == restored["metadata"]["name"]

    for obj in found["modify.yaml"]:
        if obj["kind"] == "PersistentVolumeClaim":
            assert obj["spec"]["storageClassName"] in classes

    pv, static_pvc = found["static-pv.yaml"]
    assert re.fullmatch(r"d-[a-z0-9]{20}", pv["spec"]["csi"]["volumeHandle"])
    zone = pv["metadata"]["labels"]["failure-domain.beta.kubernetes.io/zone"]
    assert "failure-domain.beta.kubernetes.io/region" in pv["metadata"]["labels"]
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["key"] == "topology.kubernetes.io/zone"
    assert term["matchExpressions"][0]["values"] == [zone]
    assert static_pvc["spec"]["volumeName"] == pv["metadata"]["name"]


# --------------------------------------------------------------------------- RAM policies


def _actions(policy: Obj) -> set[str]:
    return {a for s in policy["Statement"] for a in s["Action"]}


def test_ram_policies_are_one_pair_per_mode() -> None:
    files = sorted(p.relative_to(DEPLOY / "ram").as_posix() for p in (DEPLOY / "ram").rglob("*"))
    assert files == [
        "controller-attach",
        "controller-attach/controller.json",
        "controller-attach/node.json",
        "node-attach",
        "node-attach/controller.json",
        "node-attach/node.json",
    ]


@pytest.mark.parametrize("mode", MODES)
def test_ram_policies_follow_the_attach_mode(mode: str) -> None:
    policies = {role: ram_policy(mode, role) for role in ("controller", "node")}
    attachers = {role for role, p in policies.items() if "ecs:AttachDisk" in _actions(p)}
    assert attachers == {mode}
    # In node attach mode the controller still detaches, so DeleteVolume can release a disk
    # left on a stopped or released instance.
    assert "ecs:DetachDisk" in _actions(policies["controller"])
    assert ("ecs:DetachDisk" in _actions(policies["node"])) is (mode == "node")
    assert "ecs:CreateDisk" not in _actions(policies["node"])
    assert "ecs:DeleteDisk" not in _actions(policies["node"])
    if mode == "controller":
        assert all(a.startswith("ecs:Describe") for a in _actions(policies["node"]))
    # The node learns what its instance type attaches, the controller what each zone sells.
    for policy in policies.values():
        assert "ecs:DescribeAvailableResource" in _actions(policy)
    for policy in policies.values():
        assert policy["Version"] == "1"
        for stmt in policy["Statement"]:
            assert stmt["Effect"] == "Allow"
            assert all(a.startswith("ecs:") and "*" not in a for a in stmt["Action"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("role", ["controller", "node"])
def test_ram_policies_condition_writes_on_the_driver_tag(mode: str, role: str) -> None:
    destructive = {
        "ecs:DeleteDisk",
        "ecs:ResizeDisk",
        "ecs:ModifyDiskSpec",
        "ecs:ModifyDiskAttribute",
        "ecs:AttachDisk",
        "ecs:DetachDisk",
    }
    for stmt in ram_policy(mode, role)["Statement"]:
        if destructive & set(stmt["Action"]) and stmt["Resource"] == ["acs:ecs:*:*:disk/*"]:
            keys = stmt["Condition"]["StringLike"]
            assert keys == {f"acs:ResourceTag/{VOLUME_NAME_TAG}": "*"}
        if "ecs:CreateDisk" in stmt["Action"] and stmt["Resource"] == ["acs:ecs:*:*:disk/*"]:
            assert f"acs:RequestTag/{VOLUME_NAME_TAG}" in stmt["Condition"]["StringLike"]
        if stmt["Resource"] == ["*"]:
            assert all(a.startswith("ecs:Describe") for a in stmt["Action"])
