"""The benchmarks still run: ``python -m bench.run --quick`` produces well-formed results.

Only the shape of the results is checked, never a timing: how fast something is belongs in
the benchmark's own report, where it is a ratio measured in one run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import Report, percentile, ratio
from bench.lifecycle import ACTIONS, PHASES
from bench.run import BENCHMARKS

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), done.stdout


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_every_benchmark_reports_rows_and_ratios(quick_run: tuple[dict[str, Any], str]) -> None:
    result, _ = quick_run
    assert result["quick"] is True
    assert result["machine"]["usable_cpus"] >= 1
    assert [b["name"] for b in result["benchmarks"]] == list(BENCHMARKS)
    for bench in result["benchmarks"]:
        assert bench["rows"], bench["name"]
        assert bench["ratios"], bench["name"]
        assert bench["seconds"] > 0
        for row in bench["rows"]:
            assert set(row) == set(bench["columns"]), bench["name"]
        for key, value in bench["ratios"].items():
            assert _number(value) and value > 0, (bench["name"], key, value)


def test_tables_and_ratios_are_printed(quick_run: tuple[dict[str, Any], str]) -> None:
    result, stdout = quick_run
    for bench in result["benchmarks"]:
        assert f"== {bench['title']}" in stdout
        for key in bench["ratios"]:
            assert f"ratio {key}: " in stdout


def _rows(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return next(b["rows"] for b in result["benchmarks"] if b["name"] == name)


def test_waiter_rows_count_calls_for_each_size(quick_run: tuple[dict[str, Any], str]) -> None:
    rows = _rows(quick_run[0], "waiter")
    assert [r["waits"] for r in rows] == [1, 10]
    for row in rows:
        # Every wait needs at least one answer about its disk, shared or not.
        assert row["naive calls/wait"] >= 1
        assert row["waiter calls/wait"] > 0
        assert row["naive wall s"] > 0 and row["waiter wall s"] > 0


def test_create_volume_rows_cover_sequential_first(quick_run: tuple[dict[str, Any], str]) -> None:
    rows = _rows(quick_run[0], "create_volume")
    assert rows[0]["callers"] == 1
    assert rows[0]["vs sequential"] == 1.0
    for row in rows:
        assert row["volumes"] >= row["callers"]
        assert 0 < row["p50 s"] <= row["p99 s"]
        assert row["volumes/s"] > 0


def test_interceptor_rows_measure_both_servers(quick_run: tuple[dict[str, Any], str]) -> None:
    rows = _rows(quick_run[0], "interceptor")
    assert {r["method"] for r in rows} == {"GetPluginInfo", "Probe", "NodeGetInfo"}
    for row in rows:
        assert row["bare calls/s"] > 0 and row["daemon calls/s"] > 0
        if row["callers"] == 1:
            assert row["bare p50 us"] > 0 and row["daemon p50 us"] > 0


def test_lifecycle_rows_count_each_phase_at_its_one_mutation(
    quick_run: tuple[dict[str, Any], str],
) -> None:
    rows = _rows(quick_run[0], "lifecycle")
    assert [r["phase"] for r in rows] == [*PHASES, "lifecycle"]
    for row in rows[:-1]:
        # The emulator counted the phase's mutation once per volume, whatever else it took.
        assert f"{ACTIONS[row['phase']]}=1.00" in row["by action /vol"], row
        assert row["ECS calls/vol"] >= 1 and row["retries"] == 0
        assert 0 < row["p50 s"] <= row["p99 s"] and row["ideal s"] > 0
    total = rows[-1]
    assert total["ECS calls/vol"] == pytest.approx(sum(r["ECS calls/vol"] for r in rows[:-1]))
    assert total["peak RSS MiB"] > 1


def test_memory_rows_read_a_live_rss(quick_run: tuple[dict[str, Any], str]) -> None:
    rows = _rows(quick_run[0], "memory")
    assert rows[0]["state"] == "idle"
    assert len(rows) >= 2
    for row in rows:
        assert row["RSS MiB"] > 1  # a Python daemon is never this small


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0], 0.5) == 1.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == pytest.approx(3.97)


def test_ratio_over_zero_baseline() -> None:
    assert ratio(6, 3) == 2
    assert ratio(0, 0) == 1.0
    assert math.isinf(ratio(1, 0))
    report = Report("x", "x", ["a"], ratios={"r": math.inf})
    assert report.to_json()["ratios"] == {"r": None}


def test_render_lists_every_column_and_ratio() -> None:
    report = Report("x", "Title", ["a", "bb"], rows=[{"a": 1, "bb": 0.5}], ratios={"r": 2.0})
    text = report.render()
    assert "Title" in text and "bb" in text and "0.500" in text and "ratio r: 2.00" in text
