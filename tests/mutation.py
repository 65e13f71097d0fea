"""``python -m tests.mutation [--module PATH ...] [--jobs N] [--list]``: a mutation check.

Plants one plausible one-line bug at a time in a chosen module (a comparison turned around,
``and`` for ``or``, a ``not`` dropped, a number off by one, a flag flipped, a call
statement removed, a table entry pointing at its neighbour's value) and runs that module's
tests against it in a scratch copy of the repository. A mutant the tests still pass is a
behaviour no test pins: the report lists each survivor by line. The score is killed / all.

Not run by CI (minutes, not seconds); see docs/development.md. The working tree is never
touched: every mutant lives in a copy under a temporary directory.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Module -> the tests that own its behaviour (fast ones: unit tests).
TARGETS: dict[str, tuple[str, ...]] = {
    "csi_disk/locks.py": ("tests/unit/test_locks.py", "tests/unit/test_attach.py"),
    "csi_disk/tokens.py": ("tests/unit/test_tokens.py",),
    "csi_disk/cloud/errors.py": (
        "tests/unit/cloud/test_cloud_errors.py",
        "tests/unit/cloud/test_cloud_error_answers.py",
    ),
    "csi_disk/attach.py": ("tests/unit/test_attach.py", "tests/unit/test_deadlines.py"),
    "csi_disk/cloud/instances.py": (
        "tests/unit/cloud/test_cloud_instances.py",
        "tests/unit/test_attach.py",
    ),
    # The lookups on real loop devices need root (as root they run; else they skip).
    "csi_disk/host/devices.py": (
        "tests/unit/host/test_host_devices_unit.py",
        "tests/integration/host/test_host_devices_real.py",
        "tests/integration/host/test_host_devices_udev.py",
    ),
}
TIMEOUT = 120.0  # a mutant that hangs the tests counts as killed

_FLIP_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_FLIP_BINOP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the index-th mutation point of the module, in walk order
    line: int
    description: str


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (
        isinstance(parent, ast.Expr)
        and isinstance(node, ast.Constant)
        and isinstance(node.value, str)
    )


def _is_logging(call: ast.Call) -> bool:
    """``log.debug(...)`` and friends: removing them changes nothing a test should see."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("log", "logger", "logging")
    )


def _points(tree: ast.Module) -> Iterator[tuple[ast.AST, ast.AST | None, str]]:
    """Every (node, parent, what the mutation does) in a deterministic order."""
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    for node in ast.walk(tree):
        parent = parents.get(node)
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) in _FLIP_COMPARE:
                    flipped = _FLIP_COMPARE[type(op)].__name__
                    yield node, parent, f"{type(op).__name__} -> {flipped}"
        elif isinstance(node, ast.BoolOp):
            yield node, parent, f"{type(node.op).__name__} -> the other"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, parent, "drop not"
        elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _FLIP_BINOP:
            yield node, parent, f"{type(node.op).__name__} -> {_FLIP_BINOP[type(node.op)].__name__}"
        elif isinstance(node, ast.Constant) and not _is_docstring(node, parent):
            if isinstance(node.value, bool):
                yield node, parent, f"{node.value} -> {not node.value}"
            elif isinstance(node.value, int) and not isinstance(parent, ast.Subscript):
                yield node, parent, f"{node.value} -> {node.value + 1}"
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            if not _is_logging(node.value):
                yield node, parent, "remove the call"
        elif isinstance(node, ast.Dict) and len(node.values) > 1:
            for position, value in enumerate(node.values):
                if node.keys[position] is not None and isinstance(value, ast.Name):
                    yield value, node, "table entry -> its neighbour's value"


def _mutate(source: str, index: int) -> tuple[str, int, str]:
    """The module's source with its ``index``-th mutation applied; the line and what."""
    tree = ast.parse(source)
    node, parent, what = list(_points(tree))[index]
    line = getattr(node, "lineno", 0)
    if isinstance(node, ast.Compare):
        position = next(i for i, op in enumerate(node.ops) if f"{type(op).__name__} ->" in what)
        node.ops[position] = _FLIP_COMPARE[type(node.ops[position])]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):
        assert parent is not None
        _replace(parent, node, node.operand)
    elif isinstance(node, ast.BinOp | ast.AugAssign):
        node.op = _FLIP_BINOP[type(node.op)]()
    elif isinstance(node, ast.Constant):
        node.value = (not node.value) if isinstance(node.value, bool) else node.value + 1
    elif isinstance(node, ast.Expr):
        assert parent is not None
        _replace(parent, node, ast.Pass())
    elif isinstance(node, ast.Name) and isinstance(parent, ast.Dict):
        names = [v for v in parent.values if isinstance(v, ast.Name)]
        others = [v.id for v in names if v.id != node.id]
        if others:
            node.id = others[(names.index(node)) % len(others)]
    return ast.unparse(ast.fix_missing_locations(tree)), line, what


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list) and old in value:
            value[value.index(old)] = new
            return


def mutants(module: str) -> list[Mutant]:
    source = (REPO / module).read_text()
    found = []
    for index, (node, _, what) in enumerate(_points(ast.parse(source))):
        found.append(Mutant(module, index, getattr(node, "lineno", 0), what))
    return found


def _copy_repo(into: Path) -> Path:
    root = into / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", ".git", "*.egg-info")
    for name in ("csi_disk", "tests", "pyproject.toml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    return root


def _run_tests(root: Path, tests: Sequence[str]) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",  # a stale .pyc must never stand in for a mutant
    }
    env.pop("CI", None)
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(
            argv, cwd=root, env=env, capture_output=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return -1
    return done.returncode


def _check_copy_is_imported(root: Path) -> None:
    """The copy's csi_disk must shadow the installed (editable) one, or nothing is tested."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", "import csi_disk; print(csi_disk.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not out.startswith(str(root)):
        raise SystemExit(f"the scratch copy is not what Python imports ({out}); giving up")


def check_module(module: str, tests: Sequence[str], jobs: int) -> tuple[int, list[str]]:
    """Run every mutant of ``module``; the number killed and a line per survivor."""
    found = mutants(module)
    source = (REPO / module).read_text()
    survivors: list[str] = []
    killed = 0
    with tempfile.TemporaryDirectory(prefix="csi-mutation-") as scratch:
        roots = [_copy_repo(Path(scratch) / f"w{n}") for n in range(jobs)]
        _check_copy_is_imported(roots[0])
        if _run_tests(roots[0], tests) != 0:
            raise SystemExit(f"{module}: its tests fail without any mutant; fix them first")

        def one(job: int, mutant: Mutant) -> tuple[Mutant, bool, str]:
            root = roots[job]
            mutated, line, what = _mutate(source, mutant.index)
            (root / module).write_text(mutated)
            try:
                return mutant, _run_tests(root, tests) != 0, f"{module}:{line}: {what}"
            finally:
                (root / module).write_text(source)

        with ThreadPoolExecutor(jobs) as pool:
            batches = [found[n::jobs] for n in range(jobs)]
            results = pool.map(lambda nb: [one(nb[0], m) for m in nb[1]], enumerate(batches))
            for batch in results:
                for _, was_killed, label in batch:
                    killed += was_killed
                    if not was_killed:
                        survivors.append(label)
    return killed, sorted(survivors, key=lambda s: int(s.split(":")[1]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("--module", nargs="+", choices=sorted(TARGETS), help="default: all")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    args = parser.parse_args(argv)
    modules = args.module or list(TARGETS)
    if args.list:
        for module in modules:
            for mutant in mutants(module):
                print(f"{module}:{mutant.line}: {mutant.description}")
        return 0
    began = time.monotonic()
    total_killed = total = 0
    for module in modules:
        started = time.monotonic()
        killed, survivors = check_module(module, TARGETS[module], max(1, args.jobs))
        count = killed + len(survivors)
        total_killed += killed
        total += count
        seconds = time.monotonic() - started
        print(f"{module}: {killed}/{count} killed ({killed / count:.0%}) in {seconds:.0f}s")
        for survivor in survivors:
            print(f"  survived  {survivor}")
    print(
        f"score {total_killed}/{total} ({total_killed / max(1, total):.0%}) "
        f"in {time.monotonic() - began:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
