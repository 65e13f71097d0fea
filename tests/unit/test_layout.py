"""Package boundaries: the daemon loads driver code only, and pure logic stays pure.

``csi_disk`` is the driver; the emulator, the demo and the build-time helpers are packages
beside it (``csi_disk_emulator``, ``csi_disk_demo``, ``csi_disk_tools``) that may use the
driver's modules but are never imported by them. Checked twice: by what a real
``csi-disk serve --help`` loads (``python -X importtime``), and by reading every import
statement under ``csi_disk/``, including those inside functions, which only run later.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from csi_disk import cli

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "csi_disk"
SIBLINGS = ("csi_disk_emulator", "csi_disk_demo", "csi_disk_tools")
# What the driver package once held besides the driver; none of it may come back.
RETIRED = ("csi_disk.emulator", "csi_disk.demo", "csi_disk.cluster", "csi_disk.stack",
           "csi_disk.manifests", "csi_disk.protogen")  # fmt: skip
# Pure logic: decisions over values, no I/O, so nothing from the cloud or host ports.
PURE = ("parameters", "topology", "placement", "categories", "capabilities", "fstypes",
        "mount_flags", "volume_ids", "tokens", "locks", "errors", "deadlines",
        "quoting")  # fmt: skip
PORTS = ("csi_disk.cloud", "csi_disk.host")


# ``csi-disk`` run from the interpreter, reporting every module in sys.modules at exit: an
# import through importlib.import_module is not shown by -X importtime, only its own imports.
WITH_MODULES_AT_EXIT = """
import atexit, sys
atexit.register(lambda: print("MODULES", *sorted(sys.modules), file=sys.stderr))
from csi_disk.cli import main
sys.exit(main())
"""


def loaded_modules(*argv: str) -> set[str]:
    """Every module a Python process imports running ``argv``, as ``-X importtime`` shows
    (and as sys.modules shows at exit, when the process reports it)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
        elif line.startswith("MODULES "):
            names.update(line.split()[1:])
    return names


def belongs(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def console_script(name: str) -> Path:
    script = Path(sys.executable).parent / name
    if not script.exists():
        pytest.fail(f"{script} is missing: install the project with pip install -e .")
    return script


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "csi_disk", "serve", "--help"],
        [str(console_script("csi-disk")), "serve", "--help"],
        ["-c", WITH_MODULES_AT_EXIT, "serve", "--help"],
    ],
    ids=["python -m csi_disk", "console script", "sys.modules at exit"],
)
def test_serve_loads_no_module_of_the_programs_beside_the_driver(argv: list[str]) -> None:
    loaded = loaded_modules(*argv)
    assert {"csi_disk.cli", "csi_disk.config", "csi_disk.server"} <= loaded, "nothing measured"
    strangers = sorted(n for n in loaded if belongs(n, SIBLINGS + RETIRED))
    assert not strangers, strangers


def test_the_measure_sees_a_sibling_when_one_is_loaded() -> None:
    """The check above could pass by seeing nothing: asking for the emulator loads it."""
    shown = loaded_modules("-m", "csi_disk", "emulator", "--help")
    assert "csi_disk_emulator.blockdev" in shown  # imported by csi_disk_emulator.cli
    at_exit = loaded_modules("-c", WITH_MODULES_AT_EXIT, "emulator", "--help")
    assert {"csi_disk_emulator", "csi_disk_emulator.cli"} <= at_exit
    assert not any(belongs(n, ("csi_disk_demo",)) for n in shown | at_exit)


def imports_of(path: Path) -> set[str]:
    """Absolute names a module imports anywhere in its body, and names it hands to
    importlib.import_module as a literal."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def driver_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(DRIVER.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def test_driver_code_never_imports_the_programs_beside_it() -> None:
    offending = {
        name: sorted(n for n in imports_of(path) if belongs(n, SIBLINGS + RETIRED))
        for name, path in driver_modules().items()
    }
    offending = {k: v for k, v in offending.items() if v}
    assert not offending, offending
    for retired in RETIRED:
        assert retired not in driver_modules(), f"{retired} is back in the driver package"


def test_the_cli_names_its_programs_by_their_own_packages() -> None:
    """``csi-disk emulator`` and ``demo`` are resolved at run time by module name only."""
    assert {p.package for p in cli.PROGRAMS.values()} <= set(SIBLINGS)
    for program in cli.PROGRAMS.values():
        assert (REPO / program.package).is_dir(), program.package


def reachable(start: str, modules: dict[str, Path]) -> set[str]:
    """Driver modules ``start`` imports, directly or through other driver modules."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        for name in imports_of(modules[current]):
            # ``from csi_disk.host import mounts`` names csi_disk.host.mounts: keep the
            # longest prefix that is a module of the driver.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


@pytest.mark.parametrize("module", PURE)
def test_pure_logic_reaches_neither_the_cloud_nor_the_host(module: str) -> None:
    modules = driver_modules()
    name = f"csi_disk.{module}"
    assert name in modules, f"{name} is listed as pure logic but does not exist"
    ports = sorted(n for n in reachable(name, modules) if belongs(n, PORTS))
    assert not ports, f"{name} reaches {ports}"


def test_a_missing_program_says_so_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = dataclasses.replace(cli.PROGRAMS["emulator"], module="csi_disk_absent.cli")
    monkeypatch.setitem(cli.PROGRAMS, "emulator", absent)
    assert cli.main(["emulator", "--help"]) == 2
    assert "csi-disk emulator: the csi_disk_absent package is not installed" in (
        capsys.readouterr().err
    )


def test_a_broken_program_fails_with_its_own_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed but broken is not "not available": the import error itself surfaces."""
    monkeypatch.delitem(sys.modules, "csi_disk_demo.demo", raising=False)
    monkeypatch.setitem(sys.modules, "csi_disk_demo.kube.cluster", None)  # a module it needs
    with pytest.raises(ImportError, match=r"csi_disk_demo\.kube\.cluster"):
        cli.main(["demo", "--help"])
