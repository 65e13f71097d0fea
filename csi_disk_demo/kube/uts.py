"""``python -m csi_disk_demo.kube.uts NAME -- ARGV``: take hostname NAME and exec ARGV.

Run inside ``unshare --uts``, so the hostname is the pod's own: the kubernetes-csi sidecars
take their leader-election identity from ``os.Hostname()``, and two replicas on one machine
must not share it.
"""

from __future__ import annotations

import os
import socket
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m csi_disk_demo.kube.uts NAME -- ARGV...")
    socket.sethostname(argv[0])
    os.execvp(argv[2], argv[2:])  # noqa: S606 - an argument list


if __name__ == "__main__":
    main(sys.argv[1:])
