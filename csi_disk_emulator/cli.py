"""``csi-disk-emulator`` (or ``csi-disk emulator``, ``python -m csi_disk_emulator``): run the
emulator until SIGTERM or SIGINT, then release its loop devices (the state stays for a restart)."""

from __future__ import annotations

import argparse
import logging
import random
import signal
import threading
from dataclasses import fields
from pathlib import Path
from types import FrameType

from csi_disk.cloud.quotas import parse_quotas
from csi_disk_emulator.blockdev import loop_devices_available
from csi_disk_emulator.cloud import Latency, Options
from csi_disk_emulator.server import Emulator
from csi_disk_emulator.topology import default_topology, load_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT; port 0 picks one")
    parser.add_argument("--state-dir", required=True, type=Path, help="state, disks, device roots")
    parser.add_argument("--topology", type=Path, help="topology JSON (overrides the flags below)")
    parser.add_argument("--region", default="cn-hangzhou")
    parser.add_argument("--zones", default="", help="comma-separated zone ids")
    parser.add_argument("--instances-per-zone", type=int, default=2)
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=1.0,
        help="multiplier for create/attach/detach latency (1.0 = seconds, 0.01 for tests)",
    )
    parser.add_argument(
        "--latency",
        default="",
        help="seconds each transition takes before --latency-scale, e.g. create=1,attach=2,"
        "detach=1 (also snapshot, modify, modify_cooling)",
    )
    parser.add_argument(
        "--api-quotas",
        default="",
        help="ECS API calls per minute per action, e.g. CreateDisk=300,*=500 (* the rest, "
        "0 no quota); defaults are the driver's: *=500,DescribeInstanceTypes=400",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for ids and fault injection")
    parser.add_argument(
        "--credential-lifetime",
        type=float,
        default=6 * 3600,
        help="lifetime in seconds of RAM role credentials served by the metadata service",
    )
    parser.add_argument(
        "--block-devices",
        choices=("auto", "on", "off"),
        default="auto",
        help="back attachments with loop devices (auto: when root and loop devices exist)",
    )
    parser.add_argument("--log-level", default="WARNING")


def parse_latency(text: str, scale: float) -> Latency:
    """``create=1,attach=2`` over the default latencies; ValueError naming what is wrong."""
    latency = Latency(scale=scale)
    kinds = {f.name for f in fields(Latency)} - {"scale"}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = (s.strip() for s in item.partition("="))
        if name not in kinds or not sep:
            raise ValueError(f"latency {item[:40]!r}: expected one of {', '.join(sorted(kinds))}=S")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"latency {name}={value[:20]!r}: expected seconds") from None
        if not 0 <= seconds < 86400:
            raise ValueError(f"latency {name}={value[:20]}: expected 0 to 86400 seconds")
        setattr(latency, name, seconds)
    return latency


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    if args.topology:
        topology = load_topology(args.topology)
    else:
        zones = [z for z in args.zones.split(",") if z] or None
        topology = default_topology(
            args.region, zones, args.instances_per_zone, random.Random(f"{args.seed}:topology")
        )
    devices = {"on": True, "off": False}.get(args.block_devices, loop_devices_available())
    try:
        latency = parse_latency(args.latency, args.latency_scale)
        quotas = parse_quotas(args.api_quotas)
    except ValueError as err:
        raise SystemExit(f"csi-disk-emulator: {err}") from None
    options = Options(
        latency=latency,
        api_quotas=quotas,
        seed=args.seed,
        credential_lifetime_s=args.credential_lifetime,
        block_devices=devices,
    )
    emulator = Emulator(args.state_dir, topology, options, (host or "127.0.0.1", int(port)))
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emulator.start()
    print(f"ECS emulator at {emulator.endpoint}, state in {args.state_dir}", flush=True)
    done.wait()
    emulator.stop()
    return 0


def main(argv: list[str] | None = None, prog: str = "csi-disk-emulator") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the ECS and instance metadata emulator until SIGTERM."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
