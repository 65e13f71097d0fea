"""The rendered install: schema-valid, internally consistent, least-privilege, and in sync with
the checked-in ``deploy/`` tree."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import json
import re
import tomllib
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from csi_disk import DRIVER_NAME, manifests
from csi_disk.config import Config
from csi_disk.manifests import ManifestOptions, render
from csi_disk.modification import ModificationMixin, parse_mutable

REPO = Path(__file__).resolve().parents[2]
MODES = ("node", "controller")

# Kubernetes releases the install must be valid for: the oldest we support and the newest
# schema set kubernetes-validate ships (read at run time, so an upgrade widens the check).
OLDEST_KUBERNETES = "1.30"
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version())

# Flags `csi-disk serve` accepts, as agreed for the CLI.
ALLOWED_SERVE_FLAGS = {
    "--endpoint",
    "--mode",
    "--driver-name",
    "--attach-mode",
    "--ecs-endpoint",
    "--metadata-endpoint",
    "--region",
    "--node-id",
    "--metrics-address",
    "--log-level",
    "--log-format",
    "--kubelet-dir",
    "--device-root",
    "--max-volumes-per-node",
}

# What each sidecar needs from the API server: (apiGroup, resource, verb).
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
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "list"),
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


# --------------------------------------------------------------------------- helpers


def objects(mode: str, **overrides: Any) -> list[dict[str, Any]]:
    return render(ManifestOptions(attach_mode=mode, **overrides))


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in ("StatefulSet", "DaemonSet", "Deployment")]


def containers(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}


def arg_value(container: dict[str, Any], flag: str) -> str:
    values = [a.split("=", 1)[1] for a in container.get("args", []) if a.startswith(flag + "=")]
    assert len(values) == 1, f"{container['name']}: expected one {flag}=..., got {values}"
    return values[0]


def plugin_flags(objs: list[dict[str, Any]]) -> Iterator[str]:
    for workload in workloads(objs):
        for container in containers(workload).values():
            if container.get("command", [])[:1] == ["csi-disk"]:
                assert container["command"] == ["csi-disk", "serve"]
                for arg in container["args"]:
                    assert arg.startswith("--"), arg
                    yield arg.split("=", 1)[0]


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def rules_bound_to(objs: list[dict[str, Any]], account: str) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for binding in (o for o in objs if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        if not any(s["name"] == account for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        out |= granted(find(objs, ref["kind"], ref["name"])["rules"])
    return out


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("mode", MODES)
def test_every_object_is_valid_for_kubernetes(mode: str, version: str) -> None:
    unchecked = []
    for obj in objects(mode):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.append(obj["kind"])
    # Only the snapshot CRD kind is outside the built-in schemas; it is checked below.
    assert unchecked == ["VolumeSnapshotClass"]


def test_validator_is_strict_enough_to_catch_a_typo() -> None:
    daemonset = copy.deepcopy(find(objects("node"), "DaemonSet", "csi-disk-node"))
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSIONS[-1], strict=True)


def test_snapshot_class_structure() -> None:
    snapclass = find(objects("node"), "VolumeSnapshotClass", "alicloud-disk-snapshot")
    assert snapclass["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert snapclass["driver"] == DRIVER_NAME
    assert snapclass["deletionPolicy"] in ("Delete", "Retain")
    assert set(snapclass) == {"apiVersion", "kind", "metadata", "driver", "deletionPolicy"}


# The newest release whose schemas still carry storage.k8s.io/v1beta1 VolumeAttributesClass.
V1BETA1_ATTRIBUTES_CLASS_KUBERNETES = "1.33"


def test_examples_are_valid() -> None:
    for name, objs in manifests.examples().items():
        for obj in objs:
            if obj["kind"] == "VolumeSnapshot":
                assert obj["apiVersion"] == "snapshot.storage.k8s.io/v1"
                assert set(obj["spec"]) == {"volumeSnapshotClassName", "source"}
                continue
            if obj["kind"] == "VolumeAttributesClass":
                assert obj["apiVersion"] == "storage.k8s.io/v1beta1"
                for version in ("1.31", V1BETA1_ATTRIBUTES_CLASS_KUBERNETES):
                    kubernetes_validate.validate(obj, version, strict=True)
                continue
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
        assert objs, name


def test_attributes_class_example_is_one_the_driver_accepts() -> None:
    objs = manifests.examples()["modify.yaml"]
    classes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "VolumeAttributesClass"}
    (claim,) = (o for o in objs if o["kind"] == "PersistentVolumeClaim")
    assert classes
    for vac in classes.values():
        assert vac["driverName"] == DRIVER_NAME
        change = parse_mutable(vac["parameters"])  # what ControllerModifyVolume will get
        assert change.performance_level == vac["parameters"]["performanceLevel"]
    assert {c["parameters"]["performanceLevel"] for c in classes.values()} >= {"PL1"}
    assert claim["spec"]["volumeAttributesClassName"] in classes
    # Performance levels exist on ESSD only: the claim must come from an ESSD class.
    storage = find(objects("node"), "StorageClass", claim["spec"]["storageClassName"])
    assert storage["parameters"]["type"] == "cloud_essd"


def test_resizer_is_enabled_to_modify_volumes() -> None:
    # The controller advertises MODIFY_VOLUME; csi-resizer 1.11+ calls it only behind the gate.
    assert "ControllerModifyVolume" in vars(ModificationMixin)
    resizer = containers(find(objects("node"), "StatefulSet", "csi-disk-controller"))["csi-resizer"]
    assert "--feature-gates=VolumeAttributesClass=true" in resizer["args"]
    major, minor, _ = (int(n) for n in resizer["image"].rpartition(":v")[2].split("."))
    assert (major, minor) >= (1, 11)


# --------------------------------------------------------------------------- cross references


@pytest.mark.parametrize("mode", MODES)
def test_csidriver_matches_attach_mode(mode: str) -> None:
    objs = objects(mode)
    driver = find(objs, "CSIDriver", DRIVER_NAME)["spec"]
    assert driver["attachRequired"] is (mode == "controller")
    assert driver["fsGroupPolicy"] == "File"
    assert driver["podInfoOnMount"] is False
    assert driver["volumeLifecycleModes"] == ["Persistent"]
    for workload in workloads(objs):
        plugin = containers(workload)["csi-disk"]
        assert arg_value(plugin, "--attach-mode") == mode
        assert arg_value(plugin, "--driver-name") == DRIVER_NAME
    controller = containers(find(objs, "StatefulSet", "csi-disk-controller"))
    assert ("csi-attacher" in controller) is (mode == "controller")


@pytest.mark.parametrize("mode", MODES)
def test_driver_name_is_the_same_everywhere(mode: str) -> None:
    objs = objects(mode)
    for obj in objs:
        if obj["kind"] == "StorageClass":
            assert obj["provisioner"] == DRIVER_NAME
        if obj["kind"] == "VolumeSnapshotClass":
            assert obj["driver"] == DRIVER_NAME
    for name, example in manifests.examples().items():
        for obj in example:
            if obj["kind"] == "PersistentVolume":
                assert obj["spec"]["csi"]["driver"] == DRIVER_NAME, name


@pytest.mark.parametrize("kubelet_dir", ["/var/lib/kubelet", "/var/lib/k0s/kubelet"])
def test_node_socket_paths_line_up(kubelet_dir: str) -> None:
    daemonset = find(objects("node", kubelet_dir=kubelet_dir), "DaemonSet", "csi-disk-node")
    spec = daemonset["spec"]["template"]["spec"]
    by_name = containers(daemonset)
    volumes = {v["name"]: v for v in spec["volumes"]}

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
    assert arg_value(by_name["csi-disk"], "--kubelet-dir") == kubelet_dir


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
    for container in containers(daemonset).values():
        assert container["resources"]["requests"] and container["resources"]["limits"]


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
        "--feature-gates=Topology=true",
        "--strict-topology",
        "--extra-create-metadata",
        "--default-fstype=ext4",
        "--leader-election",
        "--worker-threads=100",
        "--timeout=300s",
    ):
        assert flag in provisioner
    socket = arg_value(by_name["csi-disk"], "--endpoint").removeprefix("unix://")
    for name, container in by_name.items():
        if name != "csi-disk":
            assert arg_value(container, "--csi-address") == socket, name
        assert container["volumeMounts"][0] == {"name": "socket-dir", "mountPath": "/csi"}
    assert {"name": "socket-dir", "emptyDir": {}} in spec["volumes"]


def test_options_reach_the_sidecars() -> None:
    objs = objects("controller", worker_threads=7, provisioner_timeout="120s", namespace="storage")
    by_name = containers(find(objs, "StatefulSet", "csi-disk-controller"))
    assert arg_value(by_name["csi-provisioner"], "--worker-threads") == "7"
    assert arg_value(by_name["csi-attacher"], "--timeout") == "120s"
    assert arg_value(by_name["csi-resizer"], "--workers") == "7"
    namespaced = [o for o in objs if "namespace" in o["metadata"]]
    assert namespaced and {o["metadata"]["namespace"] for o in namespaced} == {"storage"}
    for binding in (o for o in objs if o["kind"].endswith("Binding")):
        assert {s["namespace"] for s in binding["subjects"]} == {"storage"}


@pytest.mark.parametrize("mode", MODES)
def test_health_and_metrics_ports_line_up(mode: str) -> None:
    objs = objects(mode)
    for workload in workloads(objs):
        by_name = containers(workload)
        plugin = by_name["csi-disk"]
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
    statefulset = find(objs, "StatefulSet", "csi-disk-controller")
    find(objs, "Service", statefulset["spec"]["serviceName"])


@pytest.mark.parametrize("mode", MODES)
def test_images_are_pinned_by_tag(mode: str) -> None:
    for workload in workloads(objects(mode)):
        for container in containers(workload).values():
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, image
            assert tag and tag != "latest", image
            if "sig-storage" in image:
                assert image.startswith("registry.k8s.io/sig-storage/")
                assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), image


def test_sidecar_major_versions() -> None:
    expected = {
        "provisioner": "v5.",
        "attacher": "v4.",
        "resizer": "v1.",
        "snapshotter": "v8.",
        "livenessprobe": "v2.",
        "node_driver_registrar": "v2.",
    }
    images = manifests.SidecarImages()
    for field, major in expected.items():
        assert getattr(images, field).rpartition(":")[2].startswith(major), field


def test_image_tag_follows_project_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == manifests.IMAGE_TAG


@pytest.mark.parametrize("mode", MODES)
def test_credentials_come_from_an_optional_secret(mode: str) -> None:
    objs = objects(mode)
    for workload in workloads(objs):
        plugin = containers(workload)["csi-disk"]
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in plugin.get("env", [])}
        # The hardened mode keeps AccessKeys off the nodes.
        expect_keys = component == "controller" or mode == "node"
        assert bool(env) is expect_keys, workload["metadata"]["name"]
        if expect_keys:
            assert set(env) == {"ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"}
            assert all(ref["optional"] is True for ref in env.values())
            assert {ref["name"] for ref in env.values()} == {manifests.CREDENTIALS_SECRET}
    for workload in workloads(objects(mode, credentials="ramrole")):
        assert "env" not in containers(workload)["csi-disk"]


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize("mode", MODES)
def test_serve_flags_are_in_the_agreed_list(mode: str) -> None:
    used = set(plugin_flags(objects(mode)))
    assert used <= ALLOWED_SERVE_FLAGS, used - ALLOWED_SERVE_FLAGS
    assert used == set(manifests.SERVE_FLAGS_USED)
    # Both components really are configured, not just one.
    assert {"--mode", "--endpoint", "--attach-mode"} <= used


def _serve_parser_flags() -> set[str]:
    """Option strings of `csi-disk serve`, from the CLI parser once it exists.

    Until ``csi_disk.cli`` is written the agreed list stands in for it; from then on this
    compares with the real parser, so a renamed flag breaks the manifests' test.
    """
    if importlib.util.find_spec("csi_disk.cli") is None:
        return set(ALLOWED_SERVE_FLAGS)
    from csi_disk.cli import build_parser  # type: ignore[attr-defined]

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            serve = action.choices["serve"]
            return {opt for a in serve._actions for opt in a.option_strings}
    raise AssertionError("csi-disk has no `serve` subcommand")


@pytest.mark.parametrize("mode", MODES)
def test_serve_flags_exist_in_cli_parser(mode: str) -> None:
    accepted = _serve_parser_flags()
    used = set(plugin_flags(objects(mode)))
    assert used <= accepted, used - accepted


# --------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("mode", MODES)
def test_each_sidecar_role_covers_what_it_needs(mode: str) -> None:
    objs = objects(mode)
    for sidecar in manifests.controller_sidecars(ManifestOptions(attach_mode=mode)):
        role = find(objs, "ClusterRole", f"csi-disk-{sidecar}")
        missing = SIDECAR_NEEDS[sidecar] - granted(role["rules"])
        assert not missing, (sidecar, missing)
    assert rules_bound_to(objs, "csi-disk-controller") >= LEADER_ELECTION_NEEDS
    leases = find(objs, "Role", "csi-disk-leader-election")
    assert leases["metadata"]["namespace"] == "kube-system"


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
def test_kubelet_waits_for_the_drain_before_killing(mode: str) -> None:
    for workload in workloads(objects(mode)):
        plugin = containers(workload)["csi-disk"]
        flagged = [a for a in plugin["args"] if a.startswith("--drain-timeout=")]
        drain = float(arg_value(plugin, "--drain-timeout")) if flagged else Config().drain_timeout
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        # Kubernetes' default 30 s equals the drain timeout: SIGKILL would land as draining
        # ends. Leave room for the process to exit after the drain, too.
        assert grace >= drain + 10, workload["metadata"]["name"]


def test_every_binding_points_at_a_rendered_role_and_account() -> None:
    objs = objects("controller")
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
    assert classes["alicloud-disk-aware"]["allowVolumeExpansion"] is True
    assert classes["alicloud-disk-topology"]["parameters"]["type"] == (
        "cloud_essd,cloud_ssd,cloud_efficiency"
    )
    for name in ("alicloud-disk-aware", "alicloud-disk-topology"):
        assert classes[name]["volumeBindingMode"] == "WaitForFirstConsumer"
    for category in ("essd", "ssd", "efficiency"):
        sc = classes[f"alicloud-disk-{category}"]
        assert sc["volumeBindingMode"] == "Immediate"
        assert sc["parameters"]["type"] == f"cloud_{category}"
    assert all(sc["apiVersion"] == "storage.k8s.io/v1" for sc in classes.values())


def test_examples_reference_what_the_install_provides() -> None:
    objs = objects("node")
    classes = {o["metadata"]["name"] for o in objs if o["kind"] == "StorageClass"}
    snapshot_classes = {o["metadata"]["name"] for o in objs if o["kind"] == "VolumeSnapshotClass"}
    examples = manifests.examples()
    dynamic = {o["kind"]: o for o in examples["dynamic.yaml"]}
    pvc = dynamic["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "disk-pvc"
    assert pvc["spec"]["storageClassName"] == "alicloud-disk-aware" in classes
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    pod = dynamic["Deployment"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "disk-pvc"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/data"
    assert dynamic["Deployment"]["metadata"]["name"] == "nginx-disk"

    (resized,) = examples["resize.yaml"]
    assert resized["metadata"]["name"] == "disk-pvc"
    assert resized["spec"]["resources"]["requests"]["storage"] != "20Gi"

    snapshot = examples["snapshot-restore.yaml"][0]
    assert snapshot["spec"]["volumeSnapshotClassName"] in snapshot_classes
    assert snapshot["spec"]["source"]["persistentVolumeClaimName"] == "disk-pvc"
    restored = examples["snapshot-restore.yaml"][1]
    assert restored["spec"]["dataSource"]["name"] == snapshot["metadata"]["name"]

    pv = examples["static-pv.yaml"][0]
    assert re.fullmatch(r"d-[a-z0-9]{20}", pv["spec"]["csi"]["volumeHandle"])
    zone = pv["metadata"]["labels"]["failure-domain.beta.kubernetes.io/zone"]
    assert "failure-domain.beta.kubernetes.io/region" in pv["metadata"]["labels"]
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["key"] == "topology.kubernetes.io/zone"
    assert term["matchExpressions"][0]["values"] == [zone]
    assert examples["static-pv.yaml"][1]["spec"]["volumeName"] == pv["metadata"]["name"]


# --------------------------------------------------------------------------- RAM policies


def _actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] for a in s["Action"]}


@pytest.mark.parametrize("mode", MODES)
def test_ram_policies_follow_the_attach_mode(mode: str) -> None:
    policies = manifests.ram_policies(mode)
    attachers = {role for role, p in policies.items() if "ecs:AttachDisk" in _actions(p)}
    assert attachers == {mode}
    assert "ecs:CreateDisk" not in _actions(policies["node"])
    assert "ecs:DeleteDisk" not in _actions(policies["node"])
    for policy in policies.values():
        assert policy["Version"] == "1"
        for stmt in policy["Statement"]:
            assert stmt["Effect"] == "Allow"
            assert all(a.startswith("ecs:") and "*" not in a for a in stmt["Action"])


def test_ram_policies_condition_writes_on_the_driver_tag() -> None:
    policy = manifests.ram_policies("controller")["controller"]
    for stmt in policy["Statement"]:
        destructive = {"ecs:DeleteDisk", "ecs:ResizeDisk", "ecs:AttachDisk", "ecs:DetachDisk"}
        if destructive & set(stmt["Action"]) and stmt["Resource"] == ["acs:ecs:*:*:disk/*"]:
            keys = stmt["Condition"]["StringLike"]
            assert keys == {f"acs:ResourceTag/{manifests.VOLUME_NAME_TAG}": "*"}
        if "ecs:CreateDisk" in stmt["Action"] and stmt["Resource"] == ["acs:ecs:*:*:disk/*"]:
            assert f"acs:RequestTag/{manifests.VOLUME_NAME_TAG}" in stmt["Condition"]["StringLike"]
        if stmt["Resource"] == ["*"]:
            assert all(a.startswith("ecs:Describe") for a in stmt["Action"])


# --------------------------------------------------------------------------- YAML writer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.lists(st.dictionaries(st.text(), json_values, max_size=5), min_size=1, max_size=3))
def test_yaml_writer_round_trips(docs: list[dict[str, Any]]) -> None:
    assert list(yaml.safe_load_all(manifests.dump_yaml(docs))) == docs


@pytest.mark.parametrize(
    "text",
    [
        "true",
        "No",
        "on",
        "~",
        "null",
        "0x1F",
        "1e3",
        "10%",
        "2001-12-14",
        "0.0.0.0:9808",
        "-1",
        ".inf",
        "a: b",
        "#x",
        "- x",
        "*ref",
        "&a",
        "!tag",
        "x #y",
        "'q'",
        '"q"',
        "é\n\t\x85",
    ],
)
def test_yaml_writer_keeps_tricky_strings_strings(text: str) -> None:
    assert yaml.safe_load(manifests.dump_yaml([{text: [text]}])) == {text: [text]}


@pytest.mark.parametrize("mode", MODES)
def test_rendered_stream_parses_back_to_the_objects(mode: str) -> None:
    objs = objects(mode)
    text = manifests.dump_yaml(objs)
    assert list(yaml.safe_load_all(text)) == objs
    assert manifests.dump_yaml(objects(mode)) == text


# --------------------------------------------------------------------------- files and CLI


def test_checked_in_deploy_tree_matches_a_fresh_render() -> None:
    expected = manifests.deploy_files()
    deploy = REPO / "deploy"
    actual = {
        str(p.relative_to(deploy)): p.read_text()
        for sub in ("kubernetes", "ram", "examples")
        for p in (deploy / sub).rglob("*")
        if p.is_file()
    }
    stale = sorted(set(actual) ^ set(expected))
    changed = sorted(k for k in expected if k in actual and actual[k] != expected[k])
    hint = "run `python -m csi_disk.manifests --write-deploy`"
    assert not stale and not changed, f"{hint}: extra/missing {stale}, changed {changed}"


def test_kustomizations_list_exactly_their_files() -> None:
    for rel, text in manifests.deploy_files().items():
        if not rel.endswith("kustomization.yaml"):
            continue
        directory = Path(rel).parent
        doc = yaml.safe_load(text)
        assert doc["kind"] == "Kustomization"
        siblings = {
            str(Path(other).relative_to(directory))
            for other in manifests.deploy_files()
            if Path(other).parent == directory and not other.endswith("kustomization.yaml")
        }
        listed = set(doc["resources"])
        if rel == "kubernetes/kustomization.yaml":
            assert listed == {"node-attach"}
        else:
            assert listed == siblings, rel


def test_ram_policy_files_are_json() -> None:
    for rel, text in manifests.deploy_files().items():
        if rel.startswith("ram/"):
            mode = Path(rel).parent.name.removesuffix("-attach")
            role = Path(rel).stem
            assert json.loads(text) == manifests.ram_policies(mode)[role]


def _cli(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    manifests.add_arguments(parser)
    out = io.StringIO()
    with redirect_stdout(out):
        code = manifests.run(parser.parse_args(argv))
    return code, out.getvalue()


def test_cli_prints_the_stream() -> None:
    code, text = _cli(["--attach-mode", "controller", "--image", "reg.example/csi-disk:1.2.3"])
    assert code == 0
    docs = list(yaml.safe_load_all(text))
    assert docs == render(
        ManifestOptions(attach_mode="controller", image="reg.example/csi-disk:1.2.3")
    )
    images = {c["image"] for w in workloads(docs) for c in containers(w).values()}
    assert "reg.example/csi-disk:1.2.3" in images


def test_cli_writes_a_kustomize_directory(tmp_path: Path) -> None:
    code, _ = _cli(["--namespace", "storage", "--output-dir", str(tmp_path)])
    assert code == 0
    kustomization = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    loaded = []
    for name in kustomization["resources"]:
        loaded.extend(yaml.safe_load_all((tmp_path / name).read_text()))
    snapshot_dir = tmp_path / "snapshot"
    for name in yaml.safe_load((snapshot_dir / "kustomization.yaml").read_text())["resources"]:
        loaded.extend(yaml.safe_load_all((snapshot_dir / name).read_text()))
    assert loaded == render(ManifestOptions(namespace="storage"))


def test_options_reject_unknown_modes() -> None:
    with pytest.raises(ValueError, match="attach_mode"):
        ManifestOptions(attach_mode="sometimes")
    with pytest.raises(ValueError, match="credentials"):
        ManifestOptions(credentials="password")
    code, _ = _cli(["--worker-threads", "0"])
    assert code == 2


def test_reference_documents_every_serve_flag_and_topology_key() -> None:
    reference = (REPO / "docs" / "reference.md").read_text()
    for flag in sorted(_serve_parser_flags() - {"-h", "--help", "--version"}):
        env = "CSI_DISK_" + flag.removeprefix("--").replace("-", "_").upper()
        assert f"`{flag}`" in reference, flag
        assert f"`{env}`" in reference, env
    for key in (
        "topology.diskplugin.csi.alibabacloud.com/zone",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "alibabacloud.com/ecs-instance-id",
    ):
        assert f"`{key}`" in reference, key
