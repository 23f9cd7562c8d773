"""``mlmedic demo``: the self-healing loop on built-in data, narrated.

Stage 1: a clean reference table and a defective production batch are generated; the batch is
checked against the contract learned from the reference, repaired, quarantined where it cannot be
repaired, and checked again. Stages 2-3: a model is trained on the reference plus the repaired
batch and deployed as v1 (registered in the project's embedded MLflow); then a candidate trained on
label-shuffled data is refused by the gate and the pipeline rolls back. Stage 6: the champion is
served by `mlmedic serve` on a free loopback port, answers traffic, has its worker killed with
SIGKILL, and is recovered by the supervisor (the MTTR is printed). Stages 4-5: 54 hours of
monitoring on a simulated clock. The finale is the dashboard: printed, and written as one HTML page
that stays where the demo says it is (the project itself is removed unless ``--dir`` keeps it).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.rule import Rule

from mlmedic.core.clock import SimulatedClock
from mlmedic.core.config import write_default_configs
from mlmedic.data.datasets import TARGET, Defects, inject_defects, make_churn
from mlmedic.data.io import read_table, write_table
from mlmedic.data.stage import fix_file
from mlmedic.heal.monitor import Monitor
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.project import Project
from mlmedic.serving.launch import free_port, start_server, stop_server, wait_ready, worker_pids
from mlmedic.views.terminal import dashboard_view, print_repair_brief, print_report_brief

DEMO_DEFECTS = Defects(
    missing_rate=0.03,
    outlier_rate=0.01,
    duplicate_rate=0.02,
    bad_type_rate=0.01,
    unseen_category_rate=0.01,
    missing_target_rate=0.01,
)


def run_demo(
    console: Console,
    *,
    directory: Path | None = None,
    batch_rows: int = 2000,
    html: Path | None = Path("mlmedic-demo-dashboard.html"),
) -> bool:
    """Run the demo in ``directory`` (kept) or a temporary directory (removed); True if healed.
    The dashboard page goes to ``html`` (kept either way)."""
    keep = directory is not None
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="mlmedic-"))
    root.mkdir(parents=True, exist_ok=True)
    project = Project(root)
    try:
        healed = _stage_one(console, project, batch_rows)
        deployed = _stages_two_three(console, project)
        recovered = _stage_six(console, project)
        _finale(console, project, html, keep=keep)
        return healed and deployed and recovered
    finally:
        project.close()
        if keep:
            console.print(f"\nproject kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _stage_one(console: Console, project: Project, batch_rows: int) -> bool:
    root = project.root
    write_default_configs(root, force=True)
    console.print(Rule("[bold]mlmedic demo[/] — stage 1: data checks with auto-fix"))
    reference = make_churn(5000, seed=7)
    batch = inject_defects(make_churn(batch_rows, seed=8), DEMO_DEFECTS, seed=9, target=TARGET)
    write_table(reference, root / "reference.csv")
    write_table(batch, root / "batch.csv")
    console.print(
        f"generated reference.csv ({len(reference):,} clean rows) and batch.csv "
        f"({len(batch):,} rows with missing values, outliers, duplicates, wrongly typed "
        "values, unseen categories and missing labels) in a temporary project"
    )
    input_bytes = (root / "batch.csv").read_bytes()
    result, paths = fix_file(
        root / "batch.csv",
        root / "fixed.parquet",
        reference=root / "reference.csv",
        target=TARGET,
        config=project.settings.self_healing.data_quality,
        events=project.events,
    )
    print_report_brief(console, result.first_report, title="1. checks on batch.csv")
    if result.repair is not None:
        print_repair_brief(console, result.repair)
    print_report_brief(console, result.final_report, title="2. checks after repair")
    unchanged = (root / "batch.csv").read_bytes() == input_bytes
    console.print(
        f"wrote {paths.data.name}, {paths.quarantine.name} and {paths.audit.name}; "
        f"batch.csv {'untouched' if unchanged else 'MODIFIED (bug)'}"
    )
    healed = result.passed and unchanged
    verdict = "[green]healed[/]" if healed else "[red]NOT healed[/]"
    console.print(Rule(f"stage 1 {verdict}"))
    return healed


def _stages_two_three(console: Console, project: Project) -> bool:
    """Train and deploy v1; then a candidate trained on label-shuffled data, which the gate
    refuses, and the pipeline rolls back from."""
    root = project.root
    console.print(Rule("[bold]stages 2-3[/] — training with auto-backup, gate, auto-rollback"))
    say = lambda line: console.print(line, soft_wrap=True, markup=False)  # noqa: E731
    training = pd.concat([read_table(root / "reference.csv"), read_table(root / "fixed.parquet")])
    write_table(training, root / "training.parquet")
    console.print(
        "[bold]4. mlmedic run training.parquet -t churned -r reference.csv[/]"
        " (the reference plus the repaired batch)"
    )
    reference = root / "reference.csv"
    good = run_pipeline(
        project, root / "training.parquet", target=TARGET, reference=reference, say=say
    )
    shuffled = training.copy()
    shuffled[TARGET] = shuffled[TARGET].sample(frac=1.0, random_state=0).to_numpy()
    write_table(shuffled, root / "shuffled.parquet")
    console.print()
    console.print(
        "[bold]5. mlmedic run shuffled.parquet -t churned -r reference.csv[/]"
        " (the same rows, labels shuffled)"
    )
    bad = run_pipeline(
        project, root / "shuffled.parquet", target=TARGET, reference=reference, say=say
    )
    console.print()
    console.print("[bold]6. mlmedic models[/]")
    for info in project.registry.versions():
        aliases = f" @{', @'.join(info.aliases)}" if info.aliases else ""
        metrics = info.metrics
        reason = f" — {info.reason}" if info.reason else ""
        console.print(
            f"v{info.version} {info.status}{aliases}: accuracy {metrics.get('accuracy', 0):.3f}, "
            f"f1 {metrics.get('f1', 0):.3f}{reason}",
            soft_wrap=True,
        )
    ok = good.deployed and not bad.deployed and bad.champion_after == good.candidate
    verdict = "[green]good model deployed, bad one refused[/]" if ok else "[red]unexpected[/]"
    console.print(Rule(f"stages 2-3 {verdict}"))
    return ok


def _stage_six(console: Console, project: Project) -> bool:
    """Serve the champion under the supervisor, kill the worker with SIGKILL, watch it heal."""
    console.print(Rule("[bold]stage 6[/] — serving with auto-recovery"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = (project.root / "serve.log").open("wb")
    server = start_server(project.root, port, log_file)
    try:
        started = time.monotonic()
        if not wait_ready(url, 90):
            console.print("[red]the server did not become ready[/]")
            return False
        console.print(
            f"[bold]7. mlmedic serve --port {port}[/]: ready in {time.monotonic() - started:.1f}s"
        )
        rows = read_table(project.root / "fixed.parquet").head(200)
        features = [c for c in rows.columns if c not in (TARGET, "signup_at")]
        answers = [_post(url + "/predict", _record(row, features)) for _, row in rows.iterrows()]
        served = [a for a in answers if a is not None]
        churners = sum(a["predictions"][0] == 1 for a in served)
        console.print(
            f"   sent {len(rows)} one-row requests: {len(served)} answered by "
            f"v{served[0]['model_version'] if served else '?'}, {churners} predicted to churn"
        )
        workers = worker_pids(server.pid, project.root)
        worker = workers[0] if workers else None
        if worker is None:
            console.print("[red]no API worker found[/]")
            return False
        console.print(f"[bold]8. kill -9 {worker}[/] (the API worker)")
        killed = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        while worker_pids(server.pid, project.root) in ([worker], []) or not wait_ready(url, 0.05):
            if time.monotonic() - killed > 60:
                console.print("[red]no recovery within 60 s[/]")
                return False
        seen = time.monotonic() - killed
        time.sleep(0.3)
        incident = project.events.last("recovery")
        mttr = incident.details.get("mttr_seconds") if incident else None
        console.print(
            f"   ready again after {seen:.2f}s; the supervisor's incident: "
            + (f"{incident.message}" if incident else "(none recorded)"),
            soft_wrap=True,
        )
        after = _post(url + "/predict", _record(rows.iloc[0], features))
        console.print(f"   next request answered: {after is not None}")
        ok = after is not None and mttr is not None
        verdict = "[green]recovered[/]" if ok else "[red]NOT recovered[/]"
        console.print(Rule(f"stage 6 {verdict}" + (f" (MTTR {mttr:.2f}s)" if mttr else "")))
        monitored = _stages_four_five(console, project, url)
        return ok and monitored
    finally:
        stop_server(server)
        log_file.close()


def _stages_four_five(console: Console, project: Project, url: str) -> bool:
    """The seed's timeline on a simulated clock, a pass every 6 h over 54 h of traffic:
    harmless drift at 18 h is told once; at 30 h the north's customers start churning the
    other way round -> a retrain (one candidate per recipe, the best on the newest rows) -> the
    running server swaps; at 36-42 h the south follows -> the cooldown holds; at 48 h both are
    back to usual -> the retrained version is worse than the one it replaced: the heal that
    hurts is undone."""
    console.print(
        Rule("[bold]stages 4-5[/] — monitoring every 6 h with auto-retrain (simulated clock)")
    )
    # the 60 simulated hours end before now: the kept project's dashboard reads its last pass
    # in the past, not days ahead
    clock = SimulatedClock(time.time() - 61 * 3600)
    timed = Project(project.root, clock=clock)
    monitor = Monitor(timed, reference_data=project.root / "reference.csv")
    retrains = 0
    retrain_hours: list[int] = []
    try:
        for hour in range(0, 60, 6):
            seed = 100 + hour
            if 18 <= hour <= 24:
                window, story = make_churn(800, seed=seed, drift=1.0), "drifted traffic"
            elif hour == 30:
                window = _flipped(make_churn(800, seed=seed), "north")
                story = "the north behaves differently"
            elif 36 <= hour <= 42:
                window = _flipped(_flipped(make_churn(800, seed=seed), "north"), "south")
                story = "the south follows the north"
            else:
                window, story = make_churn(800, seed=seed), "usual traffic"
            before = _served_version(url)
            result = monitor.run_batch(window)
            drift = result.drift.summary() if result.drift else "no drift check"
            performance = result.performance.summary() if result.performance else ""
            console.print(
                f"[{hour:>2}h] {story}: {drift}; {performance}", soft_wrap=True, markup=False
            )
            console.print(f"      -> {result.decision.summary()}", soft_wrap=True, markup=False)
            if result.acted:
                console.print(f"      -> {result.acted}", soft_wrap=True, markup=False)
            if result.decision.action == "retrain":
                retrains += 1
                retrain_hours.append(hour)
                champion = timed.registry.champion()
                wanted = champion.version if champion else before
                swapped = _wait_version(url, wanted, 30)
                if wanted != before:
                    verb = "swapped to" if swapped else "did NOT swap to"
                    console.print(f"      -> the running server {verb} v{wanted}")
            clock.advance(6 * 3600)
    finally:
        timed.close()
    cooldown = timed.settings.retraining_cooldown_hours
    respected = all(b - a >= cooldown for a, b in itertools.pairwise(retrain_hours))
    ok = retrains >= 1 and respected
    if not retrains:
        verdict = "[red]no retrain[/]"
    elif not respected:
        verdict = f"[red]retrains at {retrain_hours} h broke the {cooldown:g} h cooldown[/]"
    else:
        verdict = (
            f"[green]{retrains} retrain(s) in 54 h (at {', '.join(map(str, retrain_hours))} h), "
            f"{cooldown:g} h cooldown respected[/]"
        )
    console.print(Rule(f"stages 4-5 {verdict}"))
    return ok


def _flipped(window: pd.DataFrame, region: str) -> pd.DataFrame:
    """``window`` with the churn label the other way round in ``region``."""
    out = window.copy()
    inside = out["region"] == region
    out.loc[inside, TARGET] = 1 - out.loc[inside, TARGET]
    return out


def _served_version(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url + "/model", timeout=2) as answer:
            return int(json.loads(answer.read())["version"])
    except OSError:
        return None


def _wait_version(url: str, version: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _served_version(url) == version:
            return True
        time.sleep(0.1)
    return False


def _record(row: pd.Series, features: list[str]) -> dict[str, object]:
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row[features].items()}


def _post(url: str, payload: object) -> dict | None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.loads(answer.read()))
    except OSError:
        return None


def _finale(console: Console, project: Project, html: Path | None, *, keep: bool) -> None:
    """The dashboard: what the loop did, in six figures (on the demo's clock, whose last 54
    hours were simulated)."""
    from mlmedic.views.dashboard import build
    from mlmedic.views.page import page

    console.print(Rule("[bold]the dashboard[/] — mlmedic dashboard"))
    last = project.events.select("SELECT MAX(ended_at) FROM events")[0][0]
    now = max(time.time(), float(last or 0.0))
    board = build(
        project.events,
        now=now,
        project="mlmedic demo",
        state_dir=project.state_dir,
        settings=project.settings,
    )
    console.print(dashboard_view(board))
    if html is not None:
        try:
            html.write_text(page(board), encoding="utf-8")
            console.print(
                f"the same dashboard as a page: {html.resolve()} (open it in a browser)",
                soft_wrap=True,
            )
        except OSError as exc:
            console.print(f"[yellow]cannot write {html}: {exc.strerror}[/]")
    if keep:
        counts = project.events.export(project.root / "logs")
        console.print(
            f"logs: {sum(counts.values())} events in {project.root / 'logs'} (mlmedic logs)",
            soft_wrap=True,
        )
