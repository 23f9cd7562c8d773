"""Benchmark: one-row prediction requests, mlmedic serve against `mlflow models serve`.

    python bench/bench_serve.py [--seconds 10] [--runs 3] [--trainer lightgbm]

The same registered model (HistGradientBoosting on 20 features, trained by `mlmedic run` on
100,000 rows) is served by `mlmedic serve` (1 and 2 workers) and by `mlflow models serve`
(--env-manager local), and the same client, wrk (Debian's `wrk`; `apt-get install wrk`), sends
one-row POST requests at 8 and 64 connections to each in turn; FastAPI's own hello-world POST on
uvicorn is measured beside them as the ceiling of the stack. Prints requests/s, p50 and p99
latency, and non-2xx responses. Targets: >= 20x mlflow's throughput, p99 <= 25 ms at 8 connections.
``--trainer lightgbm`` (or ``xgboost``): the champion is that library's booster instead (#23).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import make_training

from mlmedic.data.datasets import TARGET
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.project import Project
from mlmedic.serving.launch import free_port, start_server, stop_server


def scratch(prefix: str) -> Path:
    """What every wrk benchmark starts with: wrk installed, no telemetry, no tracking server
    from outside, and a temporary folder of its own."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return Path(tempfile.mkdtemp(prefix=prefix))


def wait_for(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f}s")


def best(url: str, body: str, connections: int, args: argparse.Namespace) -> dict[str, float]:
    """The best of ``args.runs`` wrk runs (by requests/s): the same number on every server."""
    runs = [wrk(url, body, connections, args.seconds) for _ in range(args.runs)]
    return max(runs, key=lambda r: r["rps"])


def wrk(url: str, body: str, connections: int, seconds: int) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
    )
    script.unlink()
    text = done.stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",  # type: ignore[dict-item]
    }


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def serve(root: Path, log: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """`mlmedic serve` for ``root`` on a free loopback port, ready; returns (process, url)."""
    port = free_port()
    process = start_server(root, port, log.open("wb"), workers=workers)
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/ready")
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    stop_server(process)


HELLO = """
from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/ping")
async def ping():
    return {"ok": True}


@app.post("/echo")
async def echo(request: Request):
    await request.body()
    return {"hello": "world"}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per measurement; the best is kept, both sides"
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trainer", default=None, help="lightgbm or xgboost (default: mlmedic's)")
    args = parser.parse_args()
    folder = scratch("bench-serve-")
    try:
        root = folder / "served"
        root.mkdir()
        data = make_training(args.rows, 1)
        data.to_parquet(folder / "train.parquet")
        project = Project(root)
        run_pipeline(project, folder / "train.parquet", target=TARGET, trainer=args.trainer)
        name, uri = project.registry.model_name, project.registry.tracking_uri
        project.close()
        record = data.drop(columns=[TARGET, "signup_at"]).iloc[0].to_dict()
        record = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
        trained = args.trainer or "the default pipeline"
        print(f"model: {name} v1 ({trained}), {len(record)} features; wrk -t2, {args.seconds}s/run")

        env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true")
        rows: list[tuple[str, int, dict[str, float]]] = []

        port = free_port()
        mlflow = start(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{name}@champion",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env,
            folder / "mlflow.log",
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/ping")
            body = json.dumps({"dataframe_records": [record]})
            for connections in (8, 64):
                target = f"http://127.0.0.1:{port}/invocations"
                result = best(target, body, connections, args)
                rows.append(("mlflow models serve", connections, result))
        finally:
            stop(mlflow)

        # the ceiling: FastAPI's own hello-world POST on uvicorn (one process, same client)
        (folder / "hello.py").write_text(HELLO, encoding="utf-8")
        port = free_port()
        hello = start(
            [
                *(sys.executable, "-m", "uvicorn", "hello:app", "--port", str(port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            dict(os.environ, PYTHONPATH=str(folder)),
            folder / "hello.log",
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/ping")
            for connections in (8, 64):
                result = best(f"http://127.0.0.1:{port}/echo", "{}", connections, args)
                rows.append(("fastapi hello-world POST", connections, result))
        finally:
            stop(hello)

        for workers in (1, 2):
            server, url = serve(root, folder / f"mlmedic-{workers}.log", workers)
            try:
                body = json.dumps(record)
                for connections in (8, 64):
                    result = best(f"{url}/predict", body, connections, args)
                    rows.append((f"mlmedic serve --workers {workers}", connections, result))
            finally:
                stop(server)

        baseline = {c: r["rps"] for s, c, r in rows if s.startswith("mlflow")}
        print(
            f"{'server':<28}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'non-2xx':>9}{'vs mlflow':>11}"
        )
        for server_name, connections, result in rows:
            ratio = result["rps"] / baseline[connections] if baseline.get(connections) else 0
            print(
                f"{server_name:<28}{connections:>6}{result['rps']:>10.0f}{result['p50_ms']:>9.1f}"
                f"{result['p99_ms']:>9.1f}{result['non2xx']:>9.0f}{ratio:>10.1f}x"
                + (f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else "")
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
