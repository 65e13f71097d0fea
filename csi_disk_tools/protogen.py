"""Regenerate the CSI gRPC modules in ``csi_disk/csi_pb`` from ``protos/csi.proto``.

The generated modules are checked in so the driver runs without a protobuf compiler;
this module is the one way to rebuild them, so every checkout produces the same files.

Usage::

    python -m csi_disk_tools.protogen          # rewrite csi_disk/csi_pb/csi_pb2*.py[i]
    python -m csi_disk_tools.protogen --check  # exit 1 when the checked-in modules are stale
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "protos"
PROTO_FILE = PROTO_DIR / "csi.proto"
PACKAGE_DIR = REPO_ROOT / "csi_disk" / "csi_pb"
GENERATED_NAMES = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")

# grpc_tools writes `import csi_pb2 as csi__pb2`, which only works with the output
# directory on sys.path; inside a package the import has to be relative.
_ABSOLUTE_IMPORT = re.compile(r"^import csi_pb2 as csi__pb2$", re.MULTILINE)
_RELATIVE_IMPORT = "from . import csi_pb2 as csi__pb2"
# The stub file is generated code too; pyproject only excludes the .py modules from ruff.
_PYI_HEADER = "# ruff: noqa\n"


class ProtocError(RuntimeError):
    """protoc rejected the proto file; the message carries its diagnostics."""


def bundled_proto_include() -> Path:
    """Directory of the google/protobuf/*.proto files shipped inside grpcio-tools."""
    import grpc_tools

    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def run_protoc(args: list[str]) -> None:
    """Run grpc_tools' embedded protoc in-process (no compiler on PATH needed)."""
    from grpc_tools import protoc

    argv = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{bundled_proto_include()}", *args]
    status = protoc.main(argv)
    if status != 0:
        raise ProtocError(f"protoc failed with status {status} for {PROTO_FILE}")


def generate(out_dir: Path) -> dict[str, str]:
    """Generate the three modules into ``out_dir`` and return their text by file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_protoc(
        [
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(PROTO_FILE),
        ]
    )
    grpc_module = out_dir / "csi_pb2_grpc.py"
    text, count = _ABSOLUTE_IMPORT.subn(_RELATIVE_IMPORT, grpc_module.read_text())
    if count != 1:
        raise ProtocError("csi_pb2_grpc.py does not import csi_pb2 the expected way")
    grpc_module.write_text(text)
    stub = out_dir / "csi_pb2.pyi"
    stub.write_text(_PYI_HEADER + stub.read_text())
    return {name: (out_dir / name).read_text() for name in GENERATED_NAMES}


def _differing(fresh: dict[str, str], package_dir: Path) -> list[str]:
    """Names in ``fresh`` whose checked-in copy is missing or different."""
    return [
        name
        for name, text in fresh.items()
        if not (package_dir / name).exists() or (package_dir / name).read_text() != text
    ]


def stale_files(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Names of checked-in modules that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        return _differing(generate(Path(tmp)), package_dir)


def write(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Regenerate into ``package_dir``; returns the names of files that changed."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    changed = _differing(fresh, package_dir)
    for name in changed:
        (package_dir / name).write_text(fresh[name])
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csi_disk_tools.protogen", description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the checked-in modules differ from a fresh generation",
    )
    options = parser.parse_args(argv)
    if options.check:
        stale = stale_files()
        if stale:
            print("stale generated modules: " + ", ".join(stale), file=sys.stderr)
            print("run: python -m csi_disk_tools.protogen", file=sys.stderr)
            return 1
        print("csi_pb modules are up to date")
        return 0
    changed = write()
    print("regenerated: " + (", ".join(changed) if changed else "nothing changed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
