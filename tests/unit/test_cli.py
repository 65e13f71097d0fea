"""Flags and environment: bad values stop the daemon with a clear message, never a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from csi_disk.cli import build_parser, config_from
from csi_disk.logs import SecretFilter


def config(argv: list[str], env: dict[str, str] | None = None):
    args = build_parser().parse_args(["serve", *argv])
    return config_from(args, env or {})


def test_flag_wins_over_environment_which_wins_over_default() -> None:
    assert config([]).attach_mode == "node"
    assert config([], {"CSI_DISK_ATTACH_MODE": "controller"}).attach_mode == "controller"
    chosen = config(["--attach-mode", "node"], {"CSI_DISK_ATTACH_MODE": "controller"})
    assert chosen.attach_mode == "node"
    assert config([], {"CSI_DISK_KUBELET_DIR": "/k"}).kubelet_dir == Path("/k")
    assert config(["--api-quotas", "AttachDisk=60"]).api_quotas == "AttachDisk=60"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"CSI_DISK_WORKERS": "0"}, "workers must be at least 1"),
        ([], {"CSI_DISK_WORKERS": "many"}, "CSI_DISK_WORKERS"),
        (["--metrics-address", "abc"], {}, "metrics-address"),
        (["--metrics-address", "127.0.0.1:99999"], {}, "metrics-address"),
        (["--endpoint", "foo"], {}, "endpoint"),
        ([], {"CSI_DISK_KUBELET_DIR": ""}, "kubelet-dir must not be empty"),
        (["--kubelet-dir", "relative/dir"], {}, "kubelet-dir must be an absolute path"),
        ([], {"CSI_DISK_MODE": "everything"}, "choose from"),
        ([], {"CSI_DISK_DETACH_BEFORE_DELETE": "maybe"}, "CSI_DISK_DETACH_BEFORE_DELETE"),
        (["--operation-timeout", "0"], {}, "operation-timeout must be positive"),
        (["--api-quotas", "CreateDisk=fast"], {}, "api-quotas CreateDisk='fast'"),
        ([], {"CSI_DISK_API_QUOTAS": "delete disk=5"}, "is not an ECS action name"),
        (["--disk-categories", "cloud-essd"], {}, "not a disk category name"),
    ],
)
def test_bad_settings_exit_with_a_message(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        config(argv, env)
    assert message in str(stop.value)


def test_secret_filter_survives_a_bad_format_and_scrubs() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "value %s and %s", ("Signature=abc123",), None
    )
    assert SecretFilter().filter(record) is True
    text = record.getMessage()
    assert "abc123" not in text
    assert "value %s and %s" in text
