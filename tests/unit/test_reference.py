"""docs/reference.md keeps up with the program: every flag ``csi-disk serve --help`` lists, with
its environment variable, and every topology key NodeGetInfo reports."""

from __future__ import annotations

from pathlib import Path

from tests.programs import serve_env, serve_flags

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_reference_documents_every_serve_flag_and_topology_key() -> None:
    reference = REFERENCE.read_text(encoding="utf-8")
    flags = serve_flags() - {"--help", "--version"}
    assert {"--endpoint", "--attach-mode", "--kubelet-dir"} <= flags
    for flag in sorted(flags):
        assert f"`{flag}`" in reference, flag
        assert f"`{serve_env(flag)}`" in reference, serve_env(flag)
    for key in (
        "topology.diskplugin.csi.alibabacloud.com/zone",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "alibabacloud.com/ecs-instance-id",
        "node.csi.alibabacloud.com/disktype.<category>",
    ):
        assert f"`{key}`" in reference, key
