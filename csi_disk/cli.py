"""Command line: ``csi-disk serve``, and ``csi-disk emulator | demo`` for the programs beside it.

Every ``serve`` flag can also come from an environment variable named
``CSI_DISK_<FLAG>`` (``--attach-mode`` -> ``CSI_DISK_ATTACH_MODE``); a flag on the command
line wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from csi_disk import __version__
from csi_disk.cloud.quotas import parse_quotas
from csi_disk.config import ATTACH_MODES, MODES, Config, check
from csi_disk.server import parse_endpoint

ENV_PREFIX = "CSI_DISK_"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Flag:
    name: str  # without the leading dashes
    help: str
    type: Callable[[str], Any] = str
    choices: Sequence[str] | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


SERVE_FLAGS = [
    Flag("endpoint", "CSI endpoint: unix:///path/csi.sock or tcp://host:port"),
    Flag("mode", "services to serve: all, controller or node", choices=MODES),
    Flag("driver-name", "CSI driver name reported to Kubernetes"),
    Flag(
        "attach-mode",
        "who attaches disks: node (NodeStageVolume) or controller (ControllerPublishVolume)",
        choices=ATTACH_MODES,
    ),
    Flag("ecs-endpoint", "ECS API endpoint override, e.g. a VPC endpoint or the emulator"),
    Flag("metadata-endpoint", "ECS instance metadata service base URL"),
    Flag("region", "region id; read from the metadata service when empty"),
    Flag("zone", "the controller's own zone; read from the metadata service when empty"),
    Flag("node-id", "node id (ECS instance id); read from the metadata service when empty"),
    Flag("metrics-address", "host:port serving Prometheus /metrics; empty disables it"),
    Flag("log-level", "debug, info, warning or error", choices=LOG_LEVELS),
    Flag("log-format", "text or json", choices=("text", "json")),
    Flag("kubelet-dir", "kubelet's root directory; every request path must lie inside it", Path),
    Flag("device-root", "host root prefix for /dev and /sys lookups", Path),
    Flag("max-volumes-per-node", "volume limit reported by NodeGetInfo; 0 derives it", int),
    Flag("sts-token-file", "JSON file with STS credentials, re-read when it changes"),
    Flag("ram-role", "RAM role of the instance to take credentials from; empty: discover it"),
    Flag("workers", "gRPC worker threads (the sidecars run up to 100 workers each)", int),
    Flag("drain-timeout", "seconds to let in-flight calls finish on SIGTERM", float),
    Flag(
        "operation-timeout",
        "seconds one call may wait for ECS at most; a caller's shorter deadline ends it sooner",
        float,
    ),
    Flag("detach-before-delete", "detach a disk from its instance before DeleteVolume", _bool),
    Flag(
        "allow-takeover",
        "attach a disk still held by a Running instance (loses that instance's unflushed writes)",
        _bool,
    ),
    Flag(
        "api-quotas",
        "ECS API calls per minute per action, e.g. CreateDisk=300,*=500 (* is any other "
        "action, 0 no limit); defaults *=500,DescribeInstanceTypes=400",
    ),
    Flag(
        "disk-categories",
        "disk categories this node attaches, comma separated, or none; empty asks ECS",
    ),
    Flag(
        "stock-refresh-interval",
        "seconds a read of what each zone has in stock serves GetCapacity and CreateVolume",
        float,
    ),
]


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    for flag in SERVE_FLAGS:
        default = getattr(defaults, flag.dest)
        shown = "" if default in ("", None) else default
        parser.add_argument(
            f"--{flag.name}",
            dest=flag.dest,
            type=flag.type,
            choices=flag.choices,
            default=None,
            help=f"{flag.help} [env {flag.env}; default: {shown!s}]",
        )
    parser.add_argument("--version", action="version", version=f"csi-disk {__version__}")


def config_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Config:
    """Flags over environment over defaults."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    for flag in SERVE_FLAGS:
        given = getattr(args, flag.dest, None)
        if given is not None:
            values[flag.dest] = given
        elif flag.env in environ:
            raw = environ[flag.env]
            try:
                values[flag.dest] = flag.type(raw)
            except (ValueError, argparse.ArgumentTypeError) as err:
                raise SystemExit(f"csi-disk: {flag.env}={raw!r}: {err}") from None
            if flag.choices and values[flag.dest] not in flag.choices:
                raise SystemExit(
                    f"csi-disk: {flag.env}={raw!r}: choose from {', '.join(flag.choices)}"
                )
    known = {f.name for f in fields(Config)}
    for name in ("kubelet_dir", "device_root"):
        # Path("") is ".", which would quietly mean the working directory.
        raw = getattr(args, name, None) or environ.get(ENV_PREFIX + name.upper())
        if raw is not None and not str(raw).strip():
            raise SystemExit(f"csi-disk: {name.replace('_', '-')} must not be empty")
    config = Config(**{k: v for k, v in values.items() if k in known})
    try:
        check(config)
        parse_endpoint(config.endpoint)
        parse_quotas(config.api_quotas)  # ValueError naming the bad entry
    except ValueError as err:
        raise SystemExit(f"csi-disk: {err}") from None
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csi-disk",
        description="CSI driver for Alibaba Cloud ECS cloud disks.",
    )
    parser.add_argument("--version", action="version", version=f"csi-disk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve CSI Identity, Controller and Node over gRPC",
        description="Serve CSI over gRPC. " + (__doc__ or "").split("\n\n")[1].replace("\n", " "),
    )
    _add_serve_arguments(serve)

    for name, program in PROGRAMS.items():
        # Listed for --help only: ``main`` hands these to their package before parsing.
        sub.add_parser(name, help=program.help, add_help=False)
    return parser


@dataclass(frozen=True)
class Program:
    """A program beside the driver, run as ``csi-disk <name>``; its package is imported only
    when it is asked for, so ``csi-disk serve`` loads driver code alone."""

    module: str  # its ``main(argv, prog)``
    help: str

    @property
    def package(self) -> str:
        return self.module.partition(".")[0]

    def run(self, name: str, argv: Sequence[str]) -> int:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as err:
            if err.name != self.package:
                raise  # the package is there but broken: show the whole traceback
            print(
                f"csi-disk {name}: the {self.package} package is not installed here "
                f"(the driver's image carries the driver only): {err}",
                file=sys.stderr,
            )
            return 2
        return int(module.main(list(argv), prog=f"csi-disk {name}") or 0)


PROGRAMS = {
    "emulator": Program("csi_disk_emulator.cli", "run the built-in ECS and metadata emulator"),
    "demo": Program(
        "csi_disk_demo.demo", "play the topology-aware story on a real Kubernetes control plane"
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PROGRAMS:
        return PROGRAMS[argv[0]].run(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    from csi_disk import daemon

    return daemon.run(config_from(args))


if __name__ == "__main__":
    sys.exit(main())
