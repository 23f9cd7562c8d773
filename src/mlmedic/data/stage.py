"""Stage 1 as one function: check the data; on failure repair it; check again.

This is the CI flow of the design this product comes from (run the tests, auto-fix on failure,
retry), as a library call that ``mlmedic check-data``, ``mlmedic fix-data`` and the training
pipeline share. Every step writes an event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlmedic.core.clock import Timings
from mlmedic.core.config import DataQualityConfig
from mlmedic.core.errors import ProjectError
from mlmedic.data.checks import CheckReport, run_checks
from mlmedic.data.contract import DataContract, Kind
from mlmedic.data.io import check_writable, is_url, read_table, table_format, write_table
from mlmedic.data.repair import REASON, SOURCE_ROW, Repairer, RepairResult
from mlmedic.store.events import EventKind, EventLog, Outcome


@dataclass
class DataStageResult:
    """What stage 1 found and did; ``data`` is what later stages should use."""

    passed: bool
    first_report: CheckReport
    final_report: CheckReport
    repair: RepairResult | None
    data: pd.DataFrame
    contract: DataContract
    timings: dict[str, float] = field(default_factory=dict)
    raw: pd.DataFrame | None = None  # the input, untouched

    @property
    def repaired(self) -> bool:
        return self.repair is not None

    def production_shaped(self) -> pd.DataFrame:
        """The input as production will send it: every row but the quarantined (unusable) ones,
        with their original values — repeated rows kept, nothing capped or filled. A version's
        drift reference describes this, not the repaired training data."""
        if self.raw is None:
            return self.data
        if self.repair is None or not len(self.repair.quarantine):
            return self.raw
        unusable = self.raw.index.isin(self.repair.quarantine[SOURCE_ROW].to_numpy())
        return self.raw.loc[~unusable]


def resolve_contract(
    batch: pd.DataFrame,
    *,
    reference: str | Path | None = None,
    contract: str | Path | None = None,
    target: str | None = None,
    config: DataQualityConfig | None = None,
    batch_name: str = "the batch",
    task: str = "classification",
    target_kind: Kind = "categorical",
) -> DataContract:
    """The contract to check ``batch`` against: from ``reference`` data, a saved ``contract``,
    or, with neither, the batch itself (robust statistics, held to a clean standard)."""
    config = config or DataQualityConfig()
    target = target or config.target_column
    if reference is not None and contract is not None:
        raise ProjectError("give either --reference or --contract, not both")
    if contract is not None:
        loaded = DataContract.load(contract)
        if target is not None and loaded.target not in (None, target):
            raise ProjectError(
                f"{contract}: the contract's target is '{loaded.target}', not '{target}'"
            )
        if loaded.task != task and loaded.target is not None:
            raise ProjectError(
                f"{contract}: the contract is for {loaded.task}, the target holds {task}'s "
                "values: pass --task to say which"
            )
        return loaded
    k = config.outlier_threshold_iqr
    if reference is not None:
        frame = read_table(reference)
        return DataContract(
            target=target,
            outlier_threshold_iqr=k,
            source=str(reference),
            task=task,
            target_kind=target_kind,
        ).fit(frame)
    return DataContract(
        target=target,
        outlier_threshold_iqr=k,
        self_reference=True,
        source=batch_name,
        task=task,
        target_kind=target_kind,
    ).fit(batch)


def heal_data(
    batch: pd.DataFrame,
    contract: DataContract,
    *,
    config: DataQualityConfig | None = None,
    events: EventLog | None = None,
    source: str = "",
) -> DataStageResult:
    """Check ``batch``; if a check fails and auto-fix is on, repair and check again.

    ``batch`` is never modified. ``passed`` is true when the data that comes out passes.
    """
    config = config or DataQualityConfig()
    details = {"source": source, "reference": contract.describe_source()}
    timings = Timings()
    with timings.step("check"):
        first = _checked(batch, contract, events, dict(details, phase="initial"))
    if first.passed or not config.auto_fix_enabled:
        return DataStageResult(
            first.passed, first, first, None, batch, contract, timings, raw=batch
        )

    if events is None:
        with timings.step("fix"):
            repair = Repairer.from_config(config).fit(contract).transform(batch)
        with timings.step("re-check"):
            final = run_checks(repair.data, contract)
    else:
        with events.span(EventKind.DATA_FIX, "auto-fix") as span:
            with timings.step("fix"):
                repair = Repairer.from_config(config).fit(contract).transform(batch)
            with timings.step("re-check"):
                final = run_checks(repair.data, contract)
            span.outcome = Outcome.SUCCESS if final.passed else Outcome.FAILURE
            span.message = (
                f"repaired {source or 'batch'}: {_summary(repair)}; re-check: {final.summary()}"
            )
            span.details = dict(
                details,
                rows=repair.accounting(),
                rules=[
                    {"rule": r.rule, "column": r.column, "rows_touched": r.rows_touched}
                    for r in repair.rules
                ],
                failed_checks_before=[f.message for f in first.failures],
                failed_checks_after=[f.message for f in final.failures],
            )
        with timings.step("re-check"):
            _checked_event(final, events, dict(details, phase="after-fix"))
    return DataStageResult(
        final.passed, first, final, repair, repair.data, contract, timings, raw=batch
    )


def _summary(repair: RepairResult) -> str:
    rows = repair.accounting()
    done: dict[str, int] = {}
    for rule in repair.rules:
        done[rule.rule] = done.get(rule.rule, 0) + rule.rows_touched
    parts = [
        f"{done[rule]:,} {label}"
        for rule, label in (
            ("impute_missing", "missing values imputed"),
            ("cap_outliers", "outliers capped"),
            ("map_unseen_category", "unseen categories mapped"),
        )
        if rule in done
    ]
    parts.append(f"{rows['quarantined_rows']:,} rows quarantined")
    parts.append(f"{rows['removed_duplicate_rows']:,} duplicates removed")
    return ", ".join(parts)


def _checked(
    batch: pd.DataFrame, contract: DataContract, events: EventLog | None, details: dict
) -> CheckReport:
    report = run_checks(batch, contract)
    if events is not None:
        _checked_event(report, events, details)
    return report


def _checked_event(report: CheckReport, events: EventLog, details: dict) -> None:
    events.record(
        EventKind.DATA_CHECK,
        "check",
        Outcome.SUCCESS if report.passed else Outcome.FAILURE,
        message=report.summary(),
        details=dict(details, failed=[f.message for f in report.failures], n_rows=report.n_rows),
    )


def _load(
    source: str | Path,
    reference: str | Path | None,
    contract: str | Path | None,
    target: str | None,
    config: DataQualityConfig,
) -> tuple[pd.DataFrame, DataContract]:
    batch = read_table(source)
    resolved = resolve_contract(
        batch,
        reference=reference,
        contract=contract,
        target=target,
        config=config,
        batch_name=str(source),
    )
    return batch, resolved


def check_file(
    source: str | Path,
    *,
    reference: str | Path | None = None,
    contract: str | Path | None = None,
    target: str | None = None,
    config: DataQualityConfig | None = None,
    events: EventLog | None = None,
    save_contract: str | Path | None = None,
) -> DataStageResult:
    """Read ``source`` and run the checks only (no repair); optionally save the contract used."""
    source = source if is_url(source) else Path(source)
    config = (config or DataQualityConfig()).model_copy(update={"auto_fix_enabled": False})
    batch, resolved = _load(source, reference, contract, target, config)
    if save_contract is not None:
        resolved.save(save_contract)
    return heal_data(batch, resolved, config=config, events=events, source=str(source))


@dataclass
class FixOutputs:
    """Where ``fix_file`` wrote its results."""

    data: Path
    quarantine: Path
    audit: Path


def output_paths(out: str | Path) -> FixOutputs:
    """``fixed.parquet`` -> itself, ``fixed.quarantine.parquet`` and ``fixed.audit.json``."""
    out = Path(out)
    return FixOutputs(
        data=out,
        quarantine=out.with_name(f"{out.stem}.quarantine{out.suffix}"),
        audit=out.with_name(f"{out.stem}.audit.json"),
    )


def fix_file(
    source: str | Path,
    out: str | Path,
    *,
    reference: str | Path | None = None,
    contract: str | Path | None = None,
    target: str | None = None,
    config: DataQualityConfig | None = None,
    events: EventLog | None = None,
) -> tuple[DataStageResult, FixOutputs]:
    """Read ``source``, run stage 1 with repair forced on, write the repaired data, the quarantine
    and the audit beside ``out``. ``source`` is never written to."""
    source = source if is_url(source) else Path(source)
    config = (config or DataQualityConfig()).model_copy(update={"auto_fix_enabled": True})
    paths = output_paths(out)
    guarded = (source,) if isinstance(source, Path) else ()
    for path in (paths.data, paths.quarantine, paths.audit):
        if isinstance(source, Path) and path.resolve() == source.resolve():
            raise ProjectError(f"{path}: refusing to overwrite the input file; choose another -o")
    table_format(paths.data)
    check_writable(paths.data)
    batch, resolved = _load(source, reference, contract, target, config)
    result = heal_data(batch, resolved, config=config, events=events, source=str(source))
    repair = result.repair
    write_table(result.data, paths.data, protect=guarded)
    if repair is not None:
        quarantine = repair.quarantine
    else:
        quarantine = batch.iloc[0:0].copy()
        quarantine.insert(0, REASON, pd.Series(dtype=object))
        quarantine.insert(0, SOURCE_ROW, pd.Series(dtype="int64"))
    write_table(quarantine, paths.quarantine, protect=guarded)
    audit = {
        "source": str(source),
        "output": str(paths.data),
        "quarantine": str(paths.quarantine),
        "reference": resolved.describe_source(),
        "checks_before": result.first_report.to_dict(),
        "checks_after": result.final_report.to_dict(),
        "repair_statistics": Repairer.from_config(config).fit(resolved).statistics(),
    }
    if repair is not None:
        audit.update(repair.audit())
    else:
        audit["rows"] = {
            "input_rows": len(batch),
            "output_rows": len(batch),
            "quarantined_rows": 0,
            "removed_duplicate_rows": 0,
        }
        audit["rules"] = []
    paths.audit.write_text(json.dumps(audit, indent=2, default=str) + "\n", encoding="utf-8")
    return result, paths
