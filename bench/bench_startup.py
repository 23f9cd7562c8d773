"""Benchmark: how long the command takes to start, against importing Typer alone.

    python bench/bench_startup.py [--repeats 20]

Runs ``mlmedic --version``, ``mlmedic --help`` and ``python -c "import typer"`` (the floor: the
CLI framework itself) the same number of times each, in fresh processes, and prints the median
and best wall time. Target: <= 0.3 s for both commands on a quiet machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def timed(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    entry = shutil.which("mlmedic")
    mlmedic = [entry] if entry else [sys.executable, "-m", "mlmedic"]
    cases = {
        'python -c "import typer"': [sys.executable, "-c", "import typer"],
        "mlmedic --version": [*mlmedic, "--version"],
        "mlmedic --help": [*mlmedic, "--help"],
    }
    print(f"| command | median | best | ({args.repeats} runs each)")
    print("|---|---:|---:|")
    for name, command in cases.items():
        times = timed(command, args.repeats)
        print(f"| `{name}` | {statistics.median(times):.3f} s | {min(times):.3f} s |")


if __name__ == "__main__":
    main()
