"""Where a server's model comes from: the local cache, the local backup, or the registry.

The champion is named by ``.mlmedic/champion.json`` (written on every champion move, and by the
server when it sees the registry's alias move); a worker that restarts reads it and loads the
cached copy without importing MLflow. The registry is asked in the background.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mlmedic.errors import MedicError
from mlmedic.events import EventKind, EventStore, Outcome
from mlmedic.serving.model import LoadedModel, ModelLoadError, cache_path, load_local

log = logging.getLogger("mlmedic.serving")


class ModelSource:
    """Finds and loads champion versions for one project."""

    def __init__(
        self,
        state_dir: Path,
        *,
        model_name: str,
        events: EventStore,
        tracking_uri: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.model_name = model_name
        self.events = events
        self.tracking_uri = tracking_uri
        self._registry: Any = None

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from mlmedic.registry import Registry

            self._registry = Registry(
                self.state_dir,
                self.events,
                model_name=self.model_name,
                tracking_uri=self.tracking_uri,
            )
        return self._registry

    def pointer(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.state_dir / "champion.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if data.get("model_name") == self.model_name else None

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
            self.registry._write_pointer(champion.version, synced=True)
        return int(champion.version)

    def load_champion(self) -> LoadedModel:
        version = self.champion_version(ask_registry=False)
        if version is None:
            version = self.champion_version(ask_registry=True)
        if version is None:
            raise ModelLoadError(
                f"model '{self.model_name}' has no champion yet: run 'mlmedic run'"
            )
        return self.load_version(version)

    def load_version(self, version: int) -> LoadedModel:
        """Cache first, then the local backup, then the registry (which refills the cache)."""
        problems: list[str] = []
        cached = cache_path(self.state_dir, version)
        if (cached / "manifest.json").exists():
            try:
                return load_local(cached, version, source="cache")
            except ModelLoadError as exc:
                problems.append(str(exc))
        backup = self.state_dir / "backups" / self.model_name / f"v{version}"
        if (backup / "manifest.json").exists():
            try:
                return load_local(backup, version, source="backup")
            except ModelLoadError as exc:
                problems.append(str(exc))
        try:
            self.registry.export(version, cached)
            loaded = load_local(cached, version, source="registry")
        except (MedicError, ModelLoadError) as exc:
            problems.append(str(exc))
            raise ModelLoadError(f"cannot load v{version}: " + "; ".join(problems)) from exc
        if problems:  # a local copy was bad: say so, the registry copy replaced it
            self.events.record(
                EventKind.RECOVERY,
                "reload-model",
                Outcome.SUCCESS,
                message=f"v{version}: local copy failed ({problems[0]}); reloaded from registry",
                details={"problems": problems},
                model_version=version,
            )
        return loaded
