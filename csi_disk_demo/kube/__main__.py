"""``python -m csi_disk_demo.kube``: bring the real cluster up and keep it until Ctrl-C.

It prints the administrator's kubeconfig, so the cluster can be explored with the pinned
kubectl while it runs; Ctrl-C or SIGTERM stops every process it started and sweeps its mounts
and loop devices.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from csi_disk_demo.kube import binaries
from csi_disk_demo.kube.cluster import Cluster


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csi_disk_demo.kube", description=__doc__)
    parser.add_argument("--state-dir", type=Path, help="kept after exit when given")
    parser.add_argument("--attach-mode", choices=("node", "controller"), default="node")
    parser.add_argument("--latency-scale", type=float, default=0.05)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="csi-disk-kube-"))
    state.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cluster = Cluster(state, args.attach_mode, latency_scale=args.latency_scale)
    try:
        cluster.start()
        kubectl = binaries.program("kubernetes", "kubectl")
        print(
            f"cluster ready in {time.monotonic() - started:.0f}s ({args.attach_mode} attach mode)\n"
            f"  {kubectl} --kubeconfig {cluster.control_plane.admin_kubeconfig} get nodes\n"
            f"logs under {state}, sockets and kubelet folders under {cluster.runtime_dir};"
            " Ctrl-C stops everything",
            flush=True,
        )
        while True:
            time.sleep(1)
            cluster.control_plane.check_running()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
