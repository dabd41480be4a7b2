"""`python -m bench [--quick | --smoke] [--only NAME[,NAME]] [--out DIR]`: run the benchmarks,
print the table, write `latest.json` and `latest.md` to DIR and append one line to its
`history.jsonl` (a run's time, mode, commit and every metric's value and ratio)."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from bench import harness
from bench.harness import Result

# Benchmark name → its module, in the order they run.
BENCHMARKS = {
    "pickup": "bench.pickup",
    "throughput": "bench.throughput",
    "small_exports": "bench.small_exports",
    "enqueue": "bench.enqueue",
    "export": "bench.export",
    "import": "bench.imports",
    "claim": "bench.claim",
    "neighbours": "bench.neighbours",
    "memory": "bench.memory",
    "backup": "bench.backup",
    "hostile": "bench.hostile",
    "http": "bench.http",
}
RESULTS = Path(__file__).resolve().parent / "results"
HISTORY = "history.jsonl"
SHARED_NOTE = (
    "Run on a shared machine (other work running at the same time): absolute numbers drift, "
    "ratios against the baseline measured in the same run are what to compare."
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes; under a minute")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, 1 rep: proves it runs")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"run only these benchmarks (comma-separated or repeated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    args.only = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return args


def run_one(module: ModuleType, mode: harness.Mode) -> Result:
    started = time.perf_counter()
    print(f"== {module.NAME}: {module.TITLE}", file=sys.stderr, flush=True)
    try:
        result: Result = module.run(mode)
    except Exception as exc:
        traceback.print_exc()
        result = Result(
            module.NAME, module.TITLE, status="error", note=f"{type(exc).__name__}: {exc}"
        )
    result.seconds = time.perf_counter() - started
    return result


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| benchmark | metric | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        if res["status"] != "ok":
            lines.append(f"| {res['name']} | {res['status']}: {res['note']} | | | | | |")
            continue
        for row in res["rows"]:  # type: ignore[attr-defined]
            unit = f" {row['unit']}" if row["unit"] else ""
            value = "n/a" if row["value"] is None else fmt(row["value"]) + unit
            baseline = "-" if row["baseline"] is None else fmt(row["baseline"]) + unit
            if row["baseline_name"]:
                baseline += f" ({row['baseline_name']})"
            metric = row["metric"] + (f" — {row['note']}" if row["note"] else "")
            lines.append(
                f"| {res['name']} | {metric} | {value} | {baseline} | {fmt(row['ratio'])} "
                f"| {row['target'] or '-'} | {fmt(row['met'])} |"
            )
    return "\n".join(lines)


def markdown(report: dict[str, object]) -> str:
    machine = report["machine"]
    assert isinstance(machine, dict)
    results = report["results"]
    assert isinstance(results, list)
    notes = [f"- **{r['name']}**: {r['note']}" for r in results if r["note"]]
    return "\n".join(
        [
            f"Mode `{report['mode']}`, {report['started_at']}, {report['seconds']} s. "
            f"Machine: {machine['nproc']} x {machine['cpu']}, PostgreSQL {machine['postgresql']}, "
            f"Python {machine['python']}, load average at start {machine['loadavg_at_start']}.",
            "",
            f"{report['note']}",
            "",
            table(results),
            "",
            *notes,
            "",
        ]
    )


def commit() -> str | None:
    """The checkout's short commit, with `+` when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True).returncode
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def history_line(report: dict[str, object]) -> str:
    """One run as one compact JSON line: `metrics` maps "benchmark: metric" to [value, ratio]."""
    results = report["results"]
    assert isinstance(results, list)
    metrics: dict[str, list[object]] = {}
    errors: list[str] = []
    for res in results:
        if res["status"] != "ok":
            errors.append(f"{res['name']}: {res['note']}")
            continue
        for row in res["rows"]:
            metrics[f"{res['name']}: {row['metric']}"] = [row["value"], row["ratio"]]
    machine = report["machine"]
    assert isinstance(machine, dict)
    line = {
        "started_at": report["started_at"],
        "mode": report["mode"],
        "commit": report.get("commit"),
        "seconds": report["seconds"],
        "load": machine.get("loadavg_at_start"),
        "metrics": metrics,
        "errors": errors,
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    mode = harness.MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    started = datetime.now(UTC)
    clock = time.perf_counter()
    machine = harness.machine_info()
    names = args.only or list(BENCHMARKS)
    results = [run_one(importlib.import_module(BENCHMARKS[name]), mode).as_dict() for name in names]
    report: dict[str, object] = {
        "mode": mode.name,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - clock, 1),
        "machine": machine,
        "commit": commit(),
        "note": SHARED_NOTE,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    (args.out / "latest.json").write_text(text)
    (args.out / "latest.md").write_text(markdown(report))
    with (args.out / HISTORY).open("a") as history:
        history.write(history_line(report))
    print(markdown(report))
    return 1 if any(r["status"] == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
