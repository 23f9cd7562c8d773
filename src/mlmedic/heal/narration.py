"""The pipeline's narration: one plain line per stage (``[1]`` data, ``[2]`` training and
registration, ``[3]`` gate and deploy), handed to whatever ``say`` the caller gives — the CLI's
console, the demo, a replay's progress. Plain text, so the stages need no terminal renderer.
"""

from __future__ import annotations

from mlmedic.data.stage import DataStageResult


def line_data(stage: DataStageResult) -> str:
    """Stage 1 in one line: what the checks found, what the fix did, what the re-check says."""
    if not stage.repaired:
        return f"[1] data: {stage.final_report.summary()}"
    rows = stage.repair.accounting() if stage.repair else {}
    return (
        f"[1] data: {stage.first_report.summary()}; auto-fixed "
        f"({rows.get('output_rows', 0):,} of {rows.get('input_rows', 0):,} rows kept, "
        f"{rows.get('quarantined_rows', 0):,} quarantined, "
        f"{rows.get('removed_duplicate_rows', 0):,} duplicates removed) "
        f"-> {stage.final_report.summary()}"
    )


def line_backup(version: int, path: object) -> str:
    return f"[2] backup: champion v{version} -> {path}"


def line_training(trainer: str, rows: int, attempts: int) -> str:
    return f"[2] training {trainer} on {rows:,} rows (up to {attempts} attempt(s)) ..."


def line_candidates(recipes: int, holdout: int) -> str:
    return (
        f"[2] training {recipes} candidate(s), one per retraining recipe, judged on the "
        f"{holdout:,} newest labelled rows ..."
    )


def line_chosen(recipe: str, metrics: dict[str, float]) -> str:
    scores = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    return f"[2] best candidate: recipe {recipe} ({scores} on the newest rows)"


def line_retry(attempt: int, exc: BaseException) -> str:
    return f"    training attempt {attempt} failed ({type(exc).__name__}: {exc}); retrying"


def line_trained(trainer: str, rows: int, seconds: float, metrics: dict[str, float]) -> str:
    scores = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    return f"[2] train: {trainer} on {rows:,} rows in {seconds:.1f}s: {scores}"


def line_registering(tracking_uri: str) -> str:
    return f"[2] registering in MLflow ({tracking_uri}) ..."


def line_registered(model_name: str, version: int, tracking_uri: str) -> str:
    return f"[2] register: {model_name} v{version} in {tracking_uri}"


def line_gate_rows(rows: int) -> str:
    return f"[3] gate on the {rows:,} newest labelled production rows (neither model trained on)"


def line_gate(version: int, summary: str) -> str:
    return f"[3] gate: v{version} {summary}"


def line_deployed(version: int) -> str:
    return f"[3] deploy: v{version} is now champion"


def line_released(version: int, mode: str, champion: int) -> str:
    how = "scored beside it, never answering" if mode == "shadow" else "answering a share"
    return (
        f"[3] release: v{version} is the {mode} ({how}); champion stays v{champion} until live "
        "labels promote or retire it ('mlmedic release status')"
    )


def line_rejected(version: int, reason: str, kept: int | None) -> str:
    stays = f"champion stays v{kept}" if kept is not None else "no champion yet"
    return f"[3] auto-rollback: v{version} rejected ({reason}); {stays}"
