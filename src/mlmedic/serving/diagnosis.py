"""Diagnosis with evidence: whether the champion is at fault, decided in a fresh process
(spawned, not forked: it inherits no thread or OpenMP state) that loads the champion and its
rollback target as a server would; a rollback only on that evidence, to a version that passes its
canary; and the serving fallback confirmed and made the champion. Each incident keeps its
evidence."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmedic.serving.pool import WorkerPool, die_with_parent
from mlmedic.store.events import EventKind, Outcome

DIAGNOSE_TIMEOUT = 90.0


@dataclass
class Incident:
    """One outage, from detection to recovery."""

    cause: str
    detected_at: float
    methods: list[str] = field(default_factory=list)
    attempts: int = 0
    dead_index: int | None = None  # the worker that died, when one did
    model_crash: int | None = None  # the version a worker died in (crash signal, in a model call)
    rolled_back: bool = False
    crash_loop: bool = False  # the version crashed a worker twice within the window
    evidence: list[str] = field(default_factory=list)


class Diagnosis(WorkerPool):
    """Evidence that the model is at fault, and the rollback it allows."""

    # ------------------------------------------------------------------ evidence and rollback
    def _diagnose(self) -> dict[str, Any]:
        """In a fresh process (spawned, not forked: no thread or OpenMP state is inherited): can
        the champion (and the rollback target) be loaded and pass the canary? The supervisor
        itself never loads a model."""
        command = [sys.executable, "-m", "mlmedic.serving.diagnosis"]
        try:
            done = subprocess.run(
                [*command, str(self.project_dir)],
                capture_output=True,
                text=True,
                timeout=DIAGNOSE_TIMEOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"the diagnosis did not finish within {DIAGNOSE_TIMEOUT:.0f}s"}
        try:
            return dict(json.loads(done.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return {"error": f"the diagnosis failed: {done.stderr.strip()[-300:]}"}

    def _rollback_on_evidence(self, incident: Incident, *, to: int | None = None) -> str | None:
        """Roll back only if the champion is at fault and the target passes its canary."""
        found = self._diagnose()
        if "error" in found:
            incident.evidence.append(f"diagnosis failed: {found['error']}")
            return None
        champion, target = found.get("champion"), to or found.get("previous")
        at_fault = None
        if not found.get("champion_ok", True):
            at_fault = f"champion v{champion} fails in a fresh process: {found.get('champion_why')}"
        elif incident.model_crash is not None and incident.model_crash == champion:
            changed = found.get("champion_since")
            window = self.serving.crash_loop_window_seconds
            if changed is not None and self.clock.now() - float(changed) <= window:
                at_fault = f"a worker died of a crash signal inside a v{champion} model call"
        if at_fault is None:
            incident.evidence.append(
                f"champion v{champion} loads and passes its canary in a fresh process"
            )
            return None
        incident.evidence.append(at_fault)
        if target is None:
            incident.evidence.append("no version to roll back to")
            return None
        checks = found.get("checks", {})
        if not checks.get(str(target), {}).get("ok"):
            incident.evidence.append(
                f"v{target} does not pass its canary either: "
                f"{checks.get(str(target), {}).get('why', 'not checked')}"
            )
            return None
        incident.evidence.append(f"v{target} passes its canary")
        return self._rollback(int(target), at_fault)

    def _rollback(self, target: int, why: str) -> str:
        from mlmedic.core.lock import project_lock
        from mlmedic.model.project import Project

        project = Project(self.project_dir, service=True)
        try:
            with project_lock(self.state_dir, "supervisor rollback", wait_seconds=10):
                done = project.registry.rollback(
                    to=target,
                    reason=f"the champion is at fault: {why} (supervisor)",
                    by="supervisor",
                )
        except Exception as exc:
            return f"rollback not possible: {exc}"
        finally:
            project.close()
            self.events.detach()
        return f"rolled back v{done.from_version} -> v{done.to_version}"

    def _check_fallback(self, body: dict[str, Any]) -> None:
        """Workers serve an older version when no copy of the champion loads: confirm it in a
        fresh process and make it the champion, so the registry, ``mlmedic models`` and
        ``/model`` agree (once per champion/fallback pair)."""
        fallback = body.get("fallback")
        if not isinstance(fallback, dict):
            self._fallback_seen = None
            return
        pair = (int(fallback.get("champion", 0)), int(fallback.get("serving", 0)))
        if pair == self._fallback_seen:
            return
        self._fallback_seen = pair
        incident = Incident(
            cause=f"serving fallback: {fallback.get('why', '')}", detected_at=self.clock.now()
        )
        done = self._rollback_on_evidence(incident, to=pair[1])
        if done and done.startswith("rolled back"):
            self.notifier.send("rollback", f"champion v{pair[0]} cannot be loaded; {done}")
        self._record(
            EventKind.ALERT,
            "model-fallback",
            Outcome.FAILURE,
            message=(
                f"champion v{pair[0]} cannot be loaded from any copy; serving v{pair[1]}"
                + (f"; {done}" if done else f"; champion kept ({'; '.join(incident.evidence)})")
            ),
            details={"champion": pair[0], "serving": pair[1], "evidence": incident.evidence},
            model_version=pair[1],
        )


def _diagnose_models(project_dir: Path) -> dict[str, Any]:
    """Load the champion and its rollback target (``previous``, else the newest other version
    with a local copy) as a fresh server would; report which pass their canary."""
    from mlmedic.model.project import Project
    from mlmedic.model.source import model_source

    project = Project(project_dir, service=True)
    source = model_source(project)
    champion = source.champion_version(ask_registry=True)
    result: dict[str, Any] = {"champion": champion, "checks": {}}
    pointer = source.pointer() or {}
    result["champion_since"] = pointer.get("updated_at")
    previous = source.previous_version()
    candidates = [v for v in [champion, previous] if v is not None]
    if previous is None:
        candidates += [v for v in source.fallback_candidates(exclude=champion)][:3]
    for version in dict.fromkeys(candidates):
        try:
            source.load_version(version)
            result["checks"][str(version)] = {"ok": True}
        except Exception as exc:
            result["checks"][str(version)] = {"ok": False, "why": str(exc)[:500]}
    champion_check = result["checks"].get(str(champion), {"ok": False, "why": "no champion"})
    result["champion_ok"] = champion_check["ok"]
    result["champion_why"] = champion_check.get("why", "")
    passing = [v for v in candidates if v != champion and result["checks"][str(v)]["ok"]]
    result["previous"] = passing[0] if passing else previous
    project.close()
    return result


if __name__ == "__main__":  # the diagnosis process: python -m mlmedic.serving.diagnosis DIR
    if len(sys.argv) == 2:
        logging.disable(logging.CRITICAL)
        print(json.dumps(_diagnose_models(Path(sys.argv[1])), default=str))
