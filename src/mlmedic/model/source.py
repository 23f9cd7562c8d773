"""Where a server's model comes from: the local cache, the local backup, or the registry.

The champion is named by ``.mlmedic/champion.json`` (written on every champion move, and by the
registry watcher when it sees the registry's alias move); a worker that restarts reads it and loads
the cached copy without importing MLflow. Every local copy is checked against the sha256 recorded
when it was exported: a corrupt copy is recorded, and replaced from the registry.

When no copy of the champion loads, the server does not go dark: it serves the newest other
version that loads and passes its canary (``fallback_from`` says so), and the supervisor confirms
the fault and moves the champion to it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from mlmedic.core.errors import MedicError
from mlmedic.model.local import CACHE_DIR, LoadedModel, ModelLoadError, cache_path, load_local
from mlmedic.store.events import EventKind, EventLog, Outcome

log = logging.getLogger("mlmedic.serving")
_SERVABLE = ("champion", "retired")


class ModelSource:
    """Finds and loads champion versions for one project."""

    def __init__(
        self,
        state_dir: Path,
        *,
        model_name: str,
        events: EventLog,
        tracking_uri: str | None = None,
        allow_pickle: bool = False,
        registry: Any = None,
    ) -> None:
        """``registry``: one the caller already holds (else one is made on first use)."""
        self.state_dir = Path(state_dir)
        self.model_name = model_name
        self.events = events
        self.tracking_uri = tracking_uri
        self.allow_pickle = allow_pickle
        self._registry: Any = registry

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from mlmedic.model.registry import Registry

            self._registry = Registry(
                self.state_dir,
                self.events,
                model_name=self.model_name,
                tracking_uri=self.tracking_uri,
                allow_pickle=self.allow_pickle,
            )
        return self._registry

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backups" / self.model_name

    def pointer(self) -> dict[str, Any] | None:
        from mlmedic.model.registry import read_pointer

        data = read_pointer(self.state_dir)
        return data if data and data.get("model_name") == self.model_name else None

    def champion_version(self, *, ask_registry: bool) -> int | None:
        """The champion: from the registry when asked (and reachable), else the local pointer."""
        pointer = self.pointer()
        local = int(pointer["version"]) if pointer else None
        if not ask_registry:
            return local
        if pointer is not None and not pointer.get("synced", True):
            return local  # an offline rollback the registry has not caught up with yet
        try:
            champion = self.registry.champion()
        except MedicError as exc:
            log.info("registry not reachable, following the local champion record: %s", exc)
            return local
        if champion is None:
            return local
        if champion.version != local:
            self.registry.write_pointer(champion.version, synced=True)
        return int(champion.version)

    def previous_version(self) -> int | None:
        """The ``previous`` alias, when the registry answers."""
        try:
            found = self.registry.alias("previous")
        except MedicError:
            return None
        return None if found is None else int(found.version)

    def fallback_candidates(self, *, exclude: int | None) -> list[int]:
        """Versions to serve when the champion cannot be, in order: the earlier champions, the
        most recent first (as the event store remembers them serving); then any other local copy
        and the registry's servable versions, newest first. Never a version someone rolled back
        from (until it is made champion again), nor one the gate rejected."""
        served, rolled_back = self._served_history()
        local: set[int] = set()
        for folder in (self.state_dir / CACHE_DIR, self.backup_dir):
            if folder.exists():
                for entry in folder.iterdir():
                    if (entry / "manifest.json").exists() and entry.name[1:].isdigit():
                        local.add(int(entry.name[1:]))
        try:
            versions = self.registry.versions()
        except MedicError:
            versions = []
        bad = {v.version for v in versions if v.status not in _SERVABLE}
        order: list[int] = []
        for version in [
            *reversed(served),
            *sorted(local, reverse=True),
            *sorted((v.version for v in versions if v.status in _SERVABLE), reverse=True),
        ]:
            if version not in order:
                order.append(version)
        skip = bad | rolled_back | {exclude}
        return [v for v in order if v not in skip]

    def _served_history(self) -> tuple[list[int], set[int]]:
        """The versions that were champion, in the order they served, and those rolled back from
        since they last were (from the event store; nothing when it cannot be read)."""
        served: list[int] = []
        rolled_back: set[int] = set()
        try:
            events = self.events.query(kind=(EventKind.ALIAS, EventKind.ROLLBACK))
        except MedicError:
            return served, rolled_back
        for event in events:
            details = event.details
            if event.kind == EventKind.ROLLBACK and event.outcome == Outcome.SUCCESS:
                if isinstance(details.get("from_version"), int):
                    rolled_back.add(int(details["from_version"]))
            elif details.get("alias") == "champion" and isinstance(details.get("to"), int):
                served.append(int(details["to"]))
                rolled_back.discard(int(details["to"]))
        return served, rolled_back

    def load_champion(self) -> LoadedModel:
        """The champion, or (when no copy of it loads) the newest version that does."""
        version = self.champion_version(ask_registry=False)
        if version is None:
            version = self.champion_version(ask_registry=True)
        if version is None:
            raise ModelLoadError(
                f"model '{self.model_name}' has no champion yet: run 'mlmedic run'"
            )
        try:
            return self.load_version(version)
        except ModelLoadError as exc:
            failure = exc
        for candidate in self.fallback_candidates(exclude=version):
            try:
                loaded = self.load_version(candidate)
            except ModelLoadError:
                continue
            loaded.fallback_from, loaded.fallback_why = version, str(failure)
            log.error("champion v%s cannot be loaded; serving v%s", version, candidate)
            return loaded
        raise failure

    def load_version(self, version: int) -> LoadedModel:
        """Cache first, then the local backup, then the registry (which refills the cache, and
        replaces a corrupt backup)."""
        problems: list[str] = []
        cached = cache_path(self.state_dir, version)
        backup = self.backup_dir / f"v{version}"
        bad_backup = False
        if (cached / "manifest.json").exists():
            try:
                return load_local(cached, version, source="cache", allow_pickle=self.allow_pickle)
            except ModelLoadError as exc:
                problems.append(str(exc))
        if (backup / "manifest.json").exists():
            try:
                loaded = load_local(
                    backup, version, source="backup", allow_pickle=self.allow_pickle
                )
            except ModelLoadError as exc:
                problems.append(str(exc))
                bad_backup = True
            else:
                if problems:  # the cache was bad: refill it from the good backup
                    _replace(backup, cached)
                    self._record_repair(version, problems, "replaced from the local backup")
                return loaded
        try:
            self.registry.export(version, cached)
            loaded = load_local(cached, version, source="registry", allow_pickle=self.allow_pickle)
        except (MedicError, ModelLoadError) as exc:
            problems.append(str(exc))
            raise ModelLoadError(f"cannot load v{version}: " + "; ".join(problems)) from exc
        if bad_backup:
            _replace(cached, backup)
        if problems:  # a local copy was bad: say so, the registry copy replaced it
            self._record_repair(version, problems, "reloaded from registry")
        return loaded

    def _record_repair(self, version: int, problems: list[str], how: str) -> None:
        self.events.record(
            EventKind.RECOVERY,
            "reload-model",
            Outcome.SUCCESS,
            message=f"v{version}: local copy failed ({problems[0]}); {how}",
            details={"problems": problems},
            model_version=version,
        )


def model_source(project: Any) -> ModelSource:
    """Where a server of this project (a worker, the release host, a diagnosis) finds its
    models."""
    from mlmedic.model.registry import default_model_name

    settings = project.settings.self_healing
    name = settings.model_training.model_name or default_model_name(project.root)
    return ModelSource(
        project.state_dir,
        model_name=name,
        events=project.events,
        allow_pickle=settings.model_training.allow_pickle_models_executing_code,
    )


def _replace(source: Path, target: Path) -> None:
    """Copy an exported version over another copy of it (atomically: copy, then rename)."""
    staging = target.with_name(f".{target.name}.repair")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


__all__ = ["ModelSource", "model_source"]
