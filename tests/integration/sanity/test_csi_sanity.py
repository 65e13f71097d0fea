"""The real csi-sanity (kubernetes-csi/csi-test) against ``csi-disk serve`` on the emulator.

Four configurations: controller attach and node attach, each with mount and block access.
Each starts an emulator with one instance, a controller and a node plugin as separate
``csi-disk serve`` processes, and runs csi-sanity with the flags a user would give it:
both endpoints, staging and mount directories inside the node's ``--kubelet-dir``, a test
volume size every default category can hold, an expansion size, a VolumeAttributesClass and
the node attach limit. csi-sanity is built from its Go module at the version
``.ci/go/csi-sanity`` pins (``.ci/go/build``, cached once per machine).

A configuration passes when no spec failed and every skipped spec is explained by a
capability the driver does not advertise (``SKIPS``, checked against what the running
daemons say); anything else fails naming the specs. Specs csi-test itself marks pending
run for no driver and are only counted. Afterwards nothing the run made may remain: no
mount or loop device under the test's directory, no disk or snapshot in the emulator.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from csi_disk.csi_pb import csi_pb2
from csi_disk_demo.stack import Plugin, Stack, leftovers
from csi_disk_emulator.process import dying_with_parent
from tests.conftest import IN_CI, REPO_ROOT

GIB = 1024**3
VOLUME_SIZE = 20 * GIB  # the smallest size every category of the default `type` list takes
EXPAND_SIZE = 21 * GIB
# A VolumeAttributesClass for the CreateVolume and ControllerModifyVolume specs.
MUTABLE_PARAMETERS = "performanceLevel: PL0\n"
LATENCY_SCALE = 0.01  # the emulator's waits at 1%: state changes still take a few polls
RUN_TIMEOUT = 300.0  # seconds; a normal run takes well under a minute
CSI_TEST_MODULE = "github.com/kubernetes-csi/csi-test/v5"

pytestmark = [pytest.mark.root, pytest.mark.timeout(RUN_TIMEOUT + 120)]

# The capability enums, whose Value() raises on a name the proto does not know.
ServiceType = csi_pb2.PluginCapability.Service.Type
ControllerRPC = csi_pb2.ControllerServiceCapability.RPC.Type
NodeRPC = csi_pb2.NodeServiceCapability.RPC.Type


@dataclass(frozen=True)
class Capability:
    """A capability as GetPluginCapabilities, ControllerGetCapabilities or
    NodeGetCapabilities reports it."""

    service: str  # "plugin", "controller" or "node"
    name: str
    number: int

    def __str__(self) -> str:
        return f"{self.service} {self.name}"


def plugin(name: str, number: int | None = None) -> Capability:
    return Capability("plugin", name, ServiceType.Value(name) if number is None else number)


def controller(name: str) -> Capability:
    return Capability("controller", name, ControllerRPC.Value(name))


def node(name: str) -> Capability:
    return Capability("node", name, NodeRPC.Value(name))


# Every skip csi-test v5.6.0 makes for want of a capability: its message, and the capability.
# A skip is explained when the driver does not advertise that capability; a skip not listed
# here (a configuration skip such as "testnodevolumeattachlimit not enabled") never is.
SKIPS: dict[str, Capability] = {
    "Controller Service not provided: CreateVolume not supported": plugin("CONTROLLER_SERVICE"),
    "GroupControllerService not supported": plugin("GROUP_CONTROLLER_SERVICE"),
    # CSI 1.13's service type 5, newer than protos/csi.proto.
    "SNAPSHOT_ACCESSIBILITY_CONSTRAINTS not supported": plugin(
        "SNAPSHOT_ACCESSIBILITY_CONSTRAINTS", 5
    ),
    "CreateVolume not supported": controller("CREATE_DELETE_VOLUME"),
    "DeleteVolume not supported": controller("CREATE_DELETE_VOLUME"),
    "ListVolumes not supported": controller("LIST_VOLUMES"),
    "GetCapacity not supported": controller("GET_CAPACITY"),
    "Volume Cloning not supported": controller("CLONE_VOLUME"),
    "ControllerPublishVolume not supported": controller("PUBLISH_UNPUBLISH_VOLUME"),
    "ControllerUnpublishVolume not supported": controller("PUBLISH_UNPUBLISH_VOLUME"),
    "Controller Publish, UnpublishVolume not supported": controller("PUBLISH_UNPUBLISH_VOLUME"),
    "ControllerPublishVolume.readonly field not supported": controller("PUBLISH_READONLY"),
    "Snapshot not supported": controller("CREATE_DELETE_SNAPSHOT"),
    "CreateSnapshot not supported": controller("CREATE_DELETE_SNAPSHOT"),
    "DeleteSnapshot not supported": controller("CREATE_DELETE_SNAPSHOT"),
    "ListSnapshots not supported": controller("LIST_SNAPSHOTS"),
    "GetSnapshot not supported": controller("GET_SNAPSHOT"),
    "ControllerExpandVolume not supported": controller("EXPAND_VOLUME"),
    "Modify volume not supported": controller("MODIFY_VOLUME"),
    "Modify Volume not supported": controller("MODIFY_VOLUME"),
    "ControllerModifyVolume not supported": controller("MODIFY_VOLUME"),
    "ControllerGetVolumeHealth not supported": controller("GET_VOLUME_HEALTH"),
    "ControllerListVolumeHealth not supported": controller("LIST_VOLUME_HEALTH"),
    "NodeStageVolume not supported": node("STAGE_UNSTAGE_VOLUME"),
    "NodeUnstageVolume not supported": node("STAGE_UNSTAGE_VOLUME"),
    "NodeGetVolume not supported": node("GET_VOLUME_STATS"),
    "NodeExpandVolume not supported": node("EXPAND_VOLUME"),
    "Service does not have single node multi writer capability": node("SINGLE_NODE_MULTI_WRITER"),
    "NodeGetVolumeHealth not supported": node("GET_VOLUME_HEALTH"),
    "NodeGetStorageHealth not supported": node("STORAGE_HEALTH"),
}

CONFIGURATIONS = [
    pytest.param("controller", "mount", id="ctl-mount"),
    pytest.param("controller", "block", id="ctl-block"),
    pytest.param("node", "mount", id="node-mount"),
    pytest.param("node", "block", id="node-block"),
]


@dataclass
class Spec:
    name: str
    status: str  # passed, failed, skipped, pending, or another of Ginkgo's failures
    message: str


@dataclass
class Report:
    """One csi-sanity run, read from its JUnit report."""

    specs: list[Spec]
    seed: str
    seconds: float
    counts: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = Counter(
            s.status if s.status in ("passed", "skipped", "pending") else "failed"
            for s in self.specs
        )

    def with_status(self, *statuses: str) -> list[Spec]:
        return [s for s in self.specs if s.status in statuses]

    @property
    def failed(self) -> list[Spec]:
        return [s for s in self.specs if s.status not in ("passed", "skipped", "pending")]


def read_junit(path: Path, seconds: float) -> Report:
    # Written by the csi-sanity this test built and ran, in a directory only it writes to.
    root = ET.parse(path).getroot()  # noqa: S314
    seed = next(
        (p.get("value", "") for p in root.iter("property") if p.get("name") == "RandomSeed"), ""
    )
    specs = []
    for case in root.iter("testcase"):
        name = case.get("name", "").removeprefix("[It] ")
        status = case.get("status", "")
        detail = case.find("failure")
        if detail is None:
            detail = case.find("error")
        if detail is None:
            detail = case.find("skipped")
        message = "" if detail is None else detail.get("message", "")
        specs.append(Spec(name, status, message.removeprefix("skipped - ").strip()))
    return Report(specs, seed, seconds)


def first_line(message: str) -> str:
    """The line of a Ginkgo failure that says what went wrong, cut short."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    line = next((x for x in lines if "rpc error" in x), lines[0] if lines else "")
    return line[:240]


def csi_test_version() -> str:
    go_mod = (REPO_ROOT / ".ci/go/csi-sanity/go.mod").read_text(encoding="utf-8")
    found = re.search(rf"^\s*{re.escape(CSI_TEST_MODULE)}\s+(\S+)", go_mod, re.MULTILINE)
    return found.group(1) if found else "?"


@pytest.fixture(scope="module")
def csi_sanity() -> Path:
    """The csi-sanity binary, built once per machine by .ci/go/build (as .ci/setup does)."""
    built = subprocess.run(
        ["bash", str(REPO_ROOT / ".ci/go/build"), "csi-sanity"],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        reason = f"cannot build csi-sanity: {built.stderr.strip()[-2000:]}"
        if "no Go toolchain" in built.stderr and not IN_CI:
            pytest.skip(reason)
        pytest.fail(reason)
    return Path(built.stdout.strip().splitlines()[-1]) / "csi-sanity"


def advertised(controller_plugin: Plugin, node_plugin: Plugin) -> set[tuple[str, int]]:
    """What the two running daemons say the driver offers, as (service, number) pairs."""
    found: set[tuple[str, int]] = set()
    for each in (controller_plugin, node_plugin):
        reply = each.identity.GetPluginCapabilities(
            csi_pb2.GetPluginCapabilitiesRequest(), timeout=30
        )
        found |= {("plugin", c.service.type) for c in reply.capabilities if c.HasField("service")}
    ctl = controller_plugin.controller.ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest(), timeout=30
    )
    found |= {("controller", c.rpc.type) for c in ctl.capabilities}
    nod = node_plugin.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), timeout=30)
    found |= {("node", c.rpc.type) for c in nod.capabilities}
    return found


def skip_reasons(report: Report, offered: set[tuple[str, int]]) -> tuple[Counter[str], list[str]]:
    """Skipped specs by the capability that explains them, and those nothing explains."""
    explained: Counter[str] = Counter()
    unexplained: list[str] = []
    for spec in report.with_status("skipped"):
        capability = SKIPS.get(spec.message)
        if capability is None:
            unexplained.append(f"{spec.name} ({spec.message!r}: no capability explains it)")
        elif (capability.service, capability.number) in offered:
            unexplained.append(f"{spec.name} ({spec.message!r}, yet {capability} is advertised)")
        else:
            explained[str(capability)] += 1
    return explained, unexplained


def summary(label: str, report: Report, explained: Counter[str], unexplained: list[str]) -> str:
    c = report.counts
    lines = [
        f"{label}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
        f", {c['pending']} pending in csi-test (seed {report.seed}, {report.seconds:.0f} s)"
    ]
    lines += [f"    FAILED {s.name}: {first_line(s.message)}" for s in report.failed]
    lines += [f"    UNEXPLAINED SKIP {text}" for text in unexplained]
    lines += [
        f"    skipped {count}: the driver does not offer {capability}"
        for capability, count in sorted(explained.items())
    ]
    return "\n".join(lines)


def emulator_leftovers(stack: Stack) -> list[str]:
    info = stack.info
    assert info is not None
    disks = info.admin("GET", "disks")
    snapshots = info.admin("GET", "snapshots")["snapshots"]
    return (
        [f"disk {d['id']}" for d in disks["disks"]]
        + [f"attachment of {a['disk_id']}" for a in disks["attachments"]]
        + [f"snapshot {s['id']}" for s in snapshots]
    )


@pytest.mark.parametrize(("attach_mode", "access_type"), CONFIGURATIONS)
def test_csi_sanity(
    host_dir: Path,
    csi_sanity: Path,
    sanity_summary: Callable[[str], None],
    attach_mode: str,
    access_type: str,
) -> None:
    label = f"csi-sanity {csi_test_version()}, {attach_mode} attach, {access_type}"
    junit = host_dir / "junit.xml"
    output = host_dir / "csi-sanity.log"
    vac = host_dir / "mutable-parameters.yaml"
    vac.write_text(MUTABLE_PARAMETERS, encoding="utf-8")
    with Stack(host_dir, latency_scale=LATENCY_SCALE) as stack:
        info = stack.start_emulator(zones=1, instances_per_zone=1)
        instance = info.instances[0]
        controller_plugin = stack.start_controller(attach_mode)
        node_plugin = stack.start_node(instance, attach_mode)
        stack.wait_ready()
        # Staging and mount directories where the kubelet would have them: inside the node
        # plugin's --kubelet-dir. csi-sanity makes and removes the two leaves itself.
        work = stack.kubelet_dir(instance.id) / "csi-sanity"
        work.mkdir()
        command = [
            str(csi_sanity),
            f"--csi.endpoint={node_plugin.endpoint}",
            f"--csi.controllerendpoint={controller_plugin.endpoint}",
            f"--csi.stagingdir={work / 'staging'}",
            f"--csi.mountdir={work / 'mount'}",
            f"--csi.testvolumeaccesstype={access_type}",
            f"--csi.testvolumesize={VOLUME_SIZE}",
            f"--csi.testvolumeexpandsize={EXPAND_SIZE}",
            f"--csi.testvolumemutableparameters={vac}",
            "--csi.testnodevolumeattachlimit",
            f"--csi.junitfile={junit}",
            f"--ginkgo.timeout={int(RUN_TIMEOUT)}s",
            "--ginkgo.no-color",
        ]
        started = time.monotonic()
        with open(output, "wb") as log:
            # Killed on timeout, and with this process if it dies (PR_SET_PDEATHSIG).
            run = subprocess.run(
                dying_with_parent(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT + 60,
                check=False,
                cwd=host_dir,
                env={**os.environ, "GINKGO_NO_COLOR": "TRUE"},
            )
        seconds = time.monotonic() - started
        if not junit.exists():
            tail = output.read_text(errors="replace")[-3000:]
            pytest.fail(f"{label}: csi-sanity exited {run.returncode} without a report:\n{tail}")
        report = read_junit(junit, seconds)
        offered = advertised(controller_plugin, node_plugin)
        left_in_cloud = emulator_leftovers(stack)
        left_on_host = leftovers(host_dir)
    explained, unexplained = skip_reasons(report, offered)
    text = summary(label, report, explained, unexplained)
    sanity_summary(text)
    problems = []
    if report.failed or unexplained:
        problems.append(text)
    if run.returncode != 0 and not report.failed:
        problems.append(f"csi-sanity exited {run.returncode}; see {output}")
    if not report.counts["passed"]:
        problems.append("no spec passed")
    if left_in_cloud:
        problems.append(f"left in the emulator after csi-sanity's cleanup: {left_in_cloud}")
    mounts, loops = left_on_host
    if mounts or loops:
        problems.append(f"left on the host after csi-sanity's cleanup: {mounts} {loops}")
    assert not problems, "\n".join(
        [*problems, f"(csi-sanity output: {output}; logs: {stack.logs})"]
    )
