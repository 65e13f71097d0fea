"""The lifecycle benchmark's charts: a PNG per phase (wall time against N for each driver
measured, and the ideal), and one of ECS calls per volume.

matplotlib is a bench-only dependency (``pip install -e '.[bench]'``): nothing else in the
project imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after the backend is chosen

from bench.lifecycle import PHASES

Row = dict[str, Any]


def _lifecycle_rows(result: dict[str, Any]) -> list[Row]:
    for bench in result.get("benchmarks", []):
        if bench["name"] == "lifecycle":
            return list(bench["rows"])
    return []


def _series(rows: Iterable[Row], phase: str, column: str) -> dict[str, list[tuple[int, float]]]:
    """driver -> [(N, value)] for one phase, in order of N."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row["phase"] == phase and isinstance(row[column], int | float):
            out.setdefault(row["driver"], []).append((row["N"], float(row[column])))
    return {driver: sorted(points) for driver, points in out.items()}


def _plot(path: Path, title: str, ylabel: str, lines: dict[str, list[tuple[int, float]]]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, points in lines.items():
        xs, ys = zip(*points, strict=True)
        style = "--" if label == "ideal" else "-o"
        ax.plot(xs, ys, style, label=label)
    ax.set_title(title)
    ax.set_xlabel("volumes (N)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def draw(result: dict[str, Any], directory: Path) -> list[Path]:
    """Write the charts of a ``bench.run`` result into ``directory``; their paths."""
    rows = _lifecycle_rows(result)
    if not rows:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for phase in PHASES:
        lines = _series(rows, phase, "wall s")
        ideal = _series([r for r in rows if r["driver"] == "driver"], phase, "ideal s")
        if "driver" in ideal:
            lines["ideal"] = ideal["driver"]
        paths.append(
            _plot(
                directory / f"lifecycle-{phase}.png",
                f"{phase} phase: wall time",
                "seconds",
                lines,
            )
        )
    paths.append(
        _plot(
            directory / "lifecycle-ecs-calls.png",
            "ECS calls per volume, whole lifecycle",
            "calls per volume",
            _series(rows, "lifecycle", "ECS calls/vol"),
        )
    )
    return paths
