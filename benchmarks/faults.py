"""Fault-injection benchmark: every scenario of :mod:`benchmarks.rig.scenarios` at full size, as table rows.

    python -m benchmarks.faults [--docs 20000] [--kills 5] [--only NAME ...] [--out DIR | --publish]

Each scenario streams ``--docs`` documents with unique ids through real ``tagger serve`` subprocesses
(embedded tansu broker, a private append-only redis-server), injects its fault and counts, without
trusting the worker: produced (acknowledged by the broker), tagged (ids found in Redis), reprocessed
(Redis's own count of tag writes − tagged) and lost (produced − tagged), plus the recovery time.
Prints the results as JSON and as markdown rows for docs/reliability.md, and writes the JSON to
OUT/figures/faults.json: a new run folder ``runs/bench/faults-*`` unless ``--out DIR`` says otherwise;
``--publish`` writes docs/figures/faults.json, which docs/reliability.md links to.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.output import add_output_arguments, begin
from benchmarks.rig import scenarios
from benchmarks.rig.chaos import FaultResult, small_model
from worker.services import start_tansu

log = logging.getLogger("benchmarks.faults")

HEADER = ("| fault | injected | produced | tagged | reprocessed | lost | recovery (s) |\n"
          "|---|---|---|---|---|---|---|")


def markdown_row(result: FaultResult) -> str:
    """One table row; recovery times of repeated faults are listed, then their range."""
    times = result.recovery_s
    recovery = ", ".join(f"{t:.1f}" for t in times) if len(times) <= 1 else (
        f"{min(times):.1f}–{max(times):.1f} ({', '.join(f'{t:.1f}' for t in times)})")
    return (f"| {result.fault} | {result.injected} | {result.produced:,} | {result.tagged:,} | "
            f"{result.reprocessed:,} | **{result.lost:,}** | {recovery} |")


def run(args: argparse.Namespace) -> list[FaultResult]:
    """Every scenario in turn, on one broker (the broker-outage ones bring their own, behind a proxy)."""
    workdir = Path(tempfile.mkdtemp(prefix="faults-bench-"))
    model = small_model(workdir / "model")
    broker = start_tansu(workdir / "tansu")
    n, rate = args.docs, args.rate
    plan: list[tuple[str, Callable[[], FaultResult]]] = [
        ("worker kills", lambda: scenarios.worker_kills(broker.address, model, workdir / "kills", n,
                                                        args.kill_rate, args.kills, promotions=2, seed=args.seed)),
        ("redis kill", lambda: scenarios.redis_kill(broker.address, model, workdir / "redis", n, rate,
                                                    outage_s=5, seed=args.seed)),
        ("broker at start", lambda: scenarios.broker_outage(workdir / "broker-start", model, n, rate,
                                                            at_start_s=10, mid_s=0, seed=args.seed)),
        ("broker mid-stream", lambda: scenarios.broker_outage(workdir / "broker-mid", model, n, rate, at_start_s=0,
                                                              mid_s=10, seed=args.seed)),
        ("peer kill", lambda: scenarios.peer_kill(broker.address, model, workdir / "peer", n, rate, seed=args.seed)),
    ]
    results = []
    try:
        for name, scenario in plan:
            if args.only and name not in args.only:
                continue
            log.info("scenario: %s", name)
            results.append(scenario())
            log.info("%s", json.dumps(results[-1].to_dict()))
    finally:
        broker.stop()
    return results


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000, help="documents per scenario")
    parser.add_argument("--rate", type=float, default=500, help="documents per second produced (paced)")
    parser.add_argument("--kills", type=int, default=5, help="worker kills in the kill scenario")
    parser.add_argument("--kill-rate", type=float, default=150,
                        help="production rate in the kill scenario (slower: the stream must outlast the kills)")
    parser.add_argument("--seed", type=int, default=7, help="seeds the kill times and fault points")
    parser.add_argument("--only", nargs="*", help="run only these scenarios (names as logged)")
    add_output_arguments(parser)
    return parser


def main() -> None:
    """Run the scenarios; print JSON and markdown rows, write the JSON to OUT/figures/faults.json."""
    args, folder = begin("faults", build_parser())
    path = folder / "figures" / "faults.json"
    results = run(args)
    rows = [r.to_dict() for r in results]
    if args.only and path.exists():  # a partial rerun replaces its rows, keeps the others
        rerun = {(row["fault"], row["injected"]) for row in rows}
        kept = [row for row in json.loads(path.read_text(encoding="utf-8"))
                if (row["fault"], row["injected"]) not in rerun]
        rows = kept + rows
    body = json.dumps(rows, indent=1)
    path.parent.mkdir(exist_ok=True)
    path.write_text(body + "\n", encoding="utf-8")
    print(body)
    print("\n".join([HEADER, *map(markdown_row, results)]))
    log.info("results in %s", path)


if __name__ == "__main__":
    main()
