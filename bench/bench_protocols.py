"""Benchmark: the three protocols of one `mlmedic serve` — `/predict`, MLflow's `/invocations`
and the Open Inference Protocol's `/v2/models/{name}/infer` — on the same model and record.

    python bench/bench_protocols.py [--seconds 10] [--rounds 2]

One worker serves the 20-feature bench model (trained on 20,000 rows); wrk (`apt-get install
wrk`) sends one-row requests at 8 connections to each path in turn, `--rounds` times. Target
(#22): each protocol within 10 % of `/predict`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import serve, stop, wrk
from bench_train import trained_project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, record, name = trained_project(Path(tmp))
        process, url = serve(root, root / "serve.log", workers=1)
        try:
            with urllib.request.urlopen(f"{url}/v2/models/{name}") as answer:
                meta = json.loads(answer.read())
            inputs = [
                {"name": i["name"], "datatype": i["datatype"], "shape": [1]}
                | {"data": [record[i["name"]]]}
                for i in meta["inputs"]
            ]
            bodies = {
                "/predict": json.dumps(record),
                "/invocations": json.dumps({"dataframe_records": [record]}),
                f"/v2/models/{name}/infer": json.dumps({"inputs": inputs}),
            }
            print("| round | path | requests/s | p50 | p99 | non-2xx |")
            print("| ---: | --- | ---: | ---: | ---: | ---: |")
            for round_ in range(1, args.rounds + 1):
                for path, body in bodies.items():
                    r = wrk(url + path, body, 8, args.seconds)
                    print(
                        f"| {round_} | {path} | {r['rps']:,.0f} | {r['p50_ms']:.1f} ms "
                        f"| {r['p99_ms']:.1f} ms | {r['non2xx']:.0f} |",
                        flush=True,
                    )
        finally:
            stop(process)


if __name__ == "__main__":
    main()
