"""The container runtime's stand-in: run a pod's command with its volumes at their mountPaths.

``python -m csi_disk_demo.kube.sandbox --root DIR --bind SRC:DST ... -- ARGV`` is started by the
node agent inside ``unshare --mount --propagation private``: in that private mount namespace it
puts a tmpfs at DIR, binds the host's system folders into it read-only, binds each published
volume directory at its mountPath (/data), chroots there and execs ARGV. No image is pulled: the
"container" is the host's own userland, and what it writes to /data lands on the disk the CSI
node plugin published. Every mount made here vanishes with the namespace when ARGV exits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/usr", "/etc")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def build_root(root: Path, binds: list[tuple[str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=0755", "sandbox", str(root))
    for folder in SYSTEM_DIRS:
        source = Path(folder)
        if not source.exists():
            continue
        inside = root / folder.lstrip("/")
        if source.is_symlink():  # Debian's merged /usr: /bin -> usr/bin
            inside.symlink_to(os.readlink(source))
            continue
        inside.mkdir()
        _mount("--bind", "-o", "ro", str(source), str(inside))
    for folder, kind in (("dev", "--rbind"), ("proc", "--bind")):
        (root / folder).mkdir()
        _mount(kind, f"/{folder}", str(root / folder))
    (root / "tmp").mkdir(mode=0o1777)
    _mount("-t", "tmpfs", "sandbox-tmp", str(root / "tmp"))
    for source, target in binds:
        inside = root / target.lstrip("/")
        inside.mkdir(parents=True, exist_ok=True)
        _mount("--bind", source, str(inside))


def parse_bind(text: str) -> tuple[str, str]:
    source, sep, target = text.partition(":")
    if not sep or not source.startswith("/") or not target.startswith("/") or ".." in target:
        raise argparse.ArgumentTypeError(f"--bind wants SRC:DST, absolute paths: {text[:200]!r}")
    return source, target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandbox")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bind", type=parse_bind, action="append", default=[])
    parser.add_argument("--workdir", default="/")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    build_root(args.root, args.bind)
    os.chroot(args.root)
    os.chdir(args.workdir)
    try:
        os.execvp(args.command[0], args.command)  # noqa: S606 - an argument list
    except OSError as err:
        print(f"sandbox: cannot run {args.command[0][:200]!r}: {err.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
