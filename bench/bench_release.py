"""Benchmark: what a release costs the champion's answers (#24).

    python bench/bench_release.py [--seconds 10] [--runs 3] [--connections 8]

One project, one champion (the default pipeline on 20,000 churn rows), served by `mlmedic
serve` (1 worker) and loaded by wrk with one-row POSTs at 8 connections, in three states in
turn: no release, a **shadow** release (every request also scored by the candidate in the
release host, off the response path) and a **canary** release (10 % of requests answered by
the candidate). Each state gets the same number of wrk runs, interleaved round by round (no
release, shadow, canary, then again) on one server — the release is switched under it, as
`mlmedic run --release` and `mlmedic release` switch it — and the median of each is kept.
Printed: requests/s, p50 and p99 (and every run's p99), non-2xx, and for a shadow how many
requests went to the candidate and how many were dropped (from /metrics). Target: a shadow
adds at most 10 % to the champion's p99.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import scratch, serve, stop, wrk

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.heal.releases.states import host_status, read_release, write_release
from mlmedic.model.project import Project


def metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found: dict[str, float] = {}
    for match in re.finditer(r"^mlmedic_release_(\w+)_total\{(.*)\} ([\d.e+]+)$", text, re.M):
        found[f"{match.group(1)} {match.group(2)}"] = float(match.group(3))
    return found


def settle(state: Path, name: str) -> None:
    """Until the release host runs for a release (and the workers' lines are open), or has
    stopped without one."""
    deadline = time.monotonic() + 60
    if name == "none":
        while host_status(state) is not None and time.monotonic() < deadline:
            status = host_status(state) or {}
            if not _alive(int(status.get("pid", 0))):
                break
            time.sleep(0.1)
        time.sleep(1.0)
        return
    wanted = read_release(state)
    while time.monotonic() < deadline:
        status = host_status(state, wanted) or {}
        if status and _alive(int(status.get("pid", 0))):
            break
        time.sleep(0.1)
    time.sleep(1.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError):
        return False
    return pid > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per state (same for all)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    folder = scratch("bench-release-")
    try:
        root = folder / "served"
        root.mkdir()
        project = Project(root)
        run_pipeline(project, make_churn(args.rows, seed=1), target=TARGET)
        run_pipeline(project, make_churn(args.rows, seed=2), target=TARGET, release="shadow")
        state = root / ".mlmedic"
        shadow = read_release(state)
        assert shadow is not None
        canary = type(shadow).from_dict({**shadow.to_dict(), "mode": "canary", "share": 0.1})
        canary.id = shadow.id + "-canary"
        project.close()
        record = make_churn(1, seed=3).drop(columns=[TARGET, "signup_at"]).iloc[0].to_dict()
        body = json.dumps(
            {"records": [{k: getattr(v, "item", lambda v=v: v)() for k, v in record.items()}]}
        )
        print(f"champion v1, candidate v2; 1 worker; wrk -t2 -c{args.connections} {args.seconds}s")

        results: dict[str, list[dict[str, float]]] = {"none": [], "shadow": [], "canary": []}
        scored: dict[str, dict[str, float]] = {}
        ended = type(shadow).from_dict({**shadow.to_dict(), "state": "retired"})
        write_release(state, ended)
        process, url = serve(root, folder / "serve.log")
        try:  # one server: the release is switched under it, as `mlmedic run` switches it
            for _ in range(args.runs):
                for name in results:
                    write_release(state, {"none": ended, "shadow": shadow, "canary": canary}[name])
                    settle(state, name)
                    before = metrics(url)
                    results[name].append(
                        wrk(url + "/predict", body, args.connections, args.seconds)
                    )
                    time.sleep(1.5)  # the shadow catches up; the counts are flushed
                    after = metrics(url)
                    scored[name] = {
                        **{k: v - before.get(k, 0.0) for k, v in after.items()},
                        **(host_status(state) or {}),
                    }
        finally:
            stop(process)
        print()
        print("| release | requests/s | p50 ms | p99 ms | non-2xx | candidate |")
        print("|---|---:|---:|---:|---:|---|")
        base = statistics.median(r["p99_ms"] for r in results["none"])
        for name, runs in results.items():
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            errors = sum(r["non2xx"] for r in runs)
            seen = scored.get(name, {})
            what = ""
            if name == "shadow":
                sent = sum(v for k, v in seen.items() if 'role="shadow"' in k)
                dropped = sum(v for k, v in seen.items() if k.startswith("failures"))
                what = (
                    f"sent {sent:,.0f} requests to the shadow, dropped {dropped:,.0f}; the host "
                    f"scored {seen.get('scored_rows', 0):,.0f} rows in {seen.get('calls', 0):,.0f}"
                    " calls (last run)"
                )
            elif name == "canary":
                answered = sum(v for k, v in seen.items() if 'role="canary"' in k)
                what = f"answered {answered:,.0f} requests (last run)"
            overhead = f" ({(p99 / base - 1) * 100:+.1f} % p99)" if name != "none" else ""
            print(
                f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f}{overhead} | {errors:.0f} | {what} |"
            )
        for name, runs in results.items():
            print(f"p99 per run, {name}: " + ", ".join(f"{r['p99_ms']:.2f}" for r in runs))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
