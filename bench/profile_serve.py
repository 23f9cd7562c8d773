"""Profile: where one worker's event loop spends a request's time at 8 connections (#22).

    python bench/profile_serve.py [--seconds 10] [--top 45]

The app `mlmedic serve` runs in each worker, under uvicorn in this process with cProfile on its
event-loop thread (cProfile slows it by about half), the 20-feature bench model trained on 20,000
rows, `wrk -t2 -c8` one-row POSTs to `/predict`. Prints wrk's figures and the profile by
cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import wrk
from bench_train import trained_project

from mlmedic.serving.app import build
from mlmedic.serving.launch import free_port


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, record, _ = trained_project(Path(tmp))
        port = free_port()
        config = uvicorn.Config(
            build(root), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        profile = cProfile.Profile()

        def run() -> None:
            profile.enable()
            server.run()
            profile.disable()

        thread = threading.Thread(target=run)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        print(wrk(f"http://127.0.0.1:{port}/predict", json.dumps(record), 8, args.seconds))
        server.should_exit = True
        thread.join()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
