"""``python -m bench.run [--quick] [--json out.json] [--only NAME ...]``: run the benchmarks,
print each one's table and ratios, and optionally write them all as JSON.

``--quick`` runs every benchmark in a tiny configuration (seconds, not minutes): it checks
the benchmarks still work, not how fast anything is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import create, interceptor, lifecycle, memory, waits
from bench.common import Report

BENCHMARKS: dict[str, Callable[[Path, bool], Report]] = {
    "waiter": waits.run,
    "create_volume": create.run,
    "interceptor": interceptor.run,
    "memory": memory.run,
    "lifecycle": lifecycle.run,
}


def machine() -> dict[str, Any]:
    """What the absolute numbers depend on."""
    return {
        "cpus": os.cpu_count() or 0,
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_all(names: Sequence[str], quick: bool, workdir: Path, baseline: str = "") -> dict[str, Any]:
    """Run the named benchmarks in order; the JSON-ready result of the whole run."""
    began = time.monotonic()
    reports: list[dict[str, Any]] = []
    for name in names:
        started = time.monotonic()
        if name == "lifecycle" and baseline:
            report = lifecycle.run(workdir / name, quick, baseline)
        else:
            report = BENCHMARKS[name](workdir / name, quick)
        report.seconds = time.monotonic() - started
        print(report.render(), flush=True)
        print(flush=True)
        reports.append(report.to_json())
    return {
        "quick": quick,
        "machine": machine(),
        "seconds": time.monotonic() - began,
        "benchmarks": reports,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (daemon and emulator logs)"
    )
    parser.add_argument(
        "--baseline",
        default="",
        metavar="REV",
        help="also run the lifecycle with the driver at this git revision (before/after)",
    )
    parser.add_argument(
        "--charts", type=Path, metavar="DIR", help="draw the lifecycle charts (PNG) into DIR"
    )
    args = parser.parse_args(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    # Short path: unix socket paths must stay under 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="csi-bench-"))
    try:
        result = run_all(names, args.quick, workdir, args.baseline)
    except BaseException:
        print(f"failed; logs kept in {workdir}", file=sys.stderr)
        raise
    if args.keep:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"total {result['seconds']:.1f}s on {result['machine']['usable_cpus']} cpus")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.charts:
        from bench import charts  # matplotlib: needed only here (the bench extra)

        for path in charts.draw(result, args.charts):
            print(f"chart {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
