"""One snapshot of the champion per pass: its version, contract, baseline and model.

Everything a pass needs from the registry is read here, once, before anything is measured: a
rollback or retrain made by another process during the pass cannot mix two versions' contract,
profile and model. ``previous`` (used only to compare on a labelled window) is loaded on demand,
at most once; the champion's model too, on first use (a version's files never change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlmedic.core.errors import MedicError, RegistryError
from mlmedic.data.contract import DataContract
from mlmedic.data.drift import ReferenceProfile
from mlmedic.model.local import ModelLoadError, cache_path
from mlmedic.model.registry import PREVIOUS, Registry
from mlmedic.model.source import ModelSource
from mlmedic.model.tasks.regression import ErrorModel


@dataclass
class ChampionSnapshot:
    """The champion as it was when the pass began."""

    version: int
    contract: DataContract
    baseline: dict[str, Any]
    registry: Registry | None = None
    _model: Any = field(default=None, repr=False)
    _previous: tuple[int, Any] | None = field(default=None, repr=False)
    _previous_loaded: bool = field(default=False, repr=False)
    _profiles: list[ReferenceProfile] | None = field(default=None, repr=False)
    _error_model: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, registry: Registry, version: int | None = None) -> ChampionSnapshot:
        """The champion now (or ``version``, when the caller just read the alias)."""
        if version is None:
            champion = registry.champion()
            if champion is None:
                raise RegistryError("no champion to monitor yet: run 'mlmedic run' first")
            version = champion.version
        baseline = registry.load_drift_profile(version)
        if baseline is None:
            raise RegistryError(f"v{version} has no drift reference; retrain it with this mlmedic")
        return cls(
            version=version,
            contract=registry.load_contract(version),
            baseline=baseline,
            registry=registry,
        )

    @property
    def model(self) -> Any:
        """The champion's model, loaded on first use (by version: it cannot change under us)."""
        if self._model is None:
            assert self.registry is not None, "a snapshot without a registry needs its model"
            self._model = self.registry.load_model(self.version)
        return self._model

    @classmethod
    def load_version(cls, registry: Registry, version: int) -> ChampionSnapshot:
        """``version`` from the project's local copies when they are there (the serving cache
        or the backups, each checked against its sha256: no MLflow import), else from the
        registry — which also fills the serving cache for the next pass."""
        import json

        source = ModelSource(
            registry.state_dir,
            model_name=registry.model_name,
            events=registry.events,
            tracking_uri=registry.tracking_uri,
            allow_pickle=registry.allow_pickle,
            registry=registry,
        )
        try:
            loaded = source.load_version(version)
        except ModelLoadError:
            return cls.load(registry, version)
        for folder in (cache_path(registry.state_dir, version), source.backup_dir / f"v{version}"):
            profile = folder / "baseline" / "drift_profile.json"
            if profile.exists():
                baseline = dict(json.loads(profile.read_text(encoding="utf-8")))
                break
        else:
            found = registry.load_drift_profile(version)
            if found is None:
                raise RegistryError(
                    f"v{version} has no drift reference; retrain it with this mlmedic"
                )
            baseline = found
        return cls(
            version=version,
            contract=loaded.contract,
            baseline=baseline,
            registry=registry,
            _model=loaded.model,
        )

    @property
    def profiles(self) -> list[ReferenceProfile]:
        """The drift profiles of the regimes the version was trained for: its own first, then
        the earlier ones it kept (``known_features``), parsed once."""
        if self._profiles is None:
            documents = [self.baseline["features"], *self.baseline.get("known_features", [])]
            self._profiles = [ReferenceProfile.from_dict(d) for d in documents]
        return self._profiles

    @property
    def error_model(self) -> Any:
        """A regression's model of the error (``tasks.regression.ErrorModel``), read once."""
        if self._error_model is None:
            self._error_model = ErrorModel.from_dict(self.baseline["error_model"])
        return self._error_model

    @property
    def target(self) -> str | None:
        return self.contract.target

    @property
    def classes(self) -> list[Any]:
        return list(getattr(self.model, "classes_", []))

    def previous(self) -> tuple[int, Any] | None:
        """(version, model) of ``previous`` as the registry has it now, or None."""
        if not self._previous_loaded and self.registry is not None:
            self._previous_loaded = True
            try:
                version = self.registry.alias_version(PREVIOUS)
                if version is not None and version != self.version:
                    other = ChampionSnapshot.load_version(self.registry, version)
                    self._previous = (version, other.model)
            except MedicError:
                self._previous = None  # a previous that cannot be loaded compares with nothing
        return self._previous
