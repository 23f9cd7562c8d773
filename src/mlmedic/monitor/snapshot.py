"""One snapshot of the champion per pass: its version, contract, baseline and model.

Everything a pass needs from the registry is read here, once, before anything is measured: a
rollback or retrain made by another process during the pass cannot mix two versions' contract,
profile and model. ``previous`` (used only to compare on a labelled window) is loaded on demand,
at most once; the champion's model too, on first use (a version's files never change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlmedic.data.contract import DataContract
from mlmedic.errors import RegistryError
from mlmedic.registry import PREVIOUS, Registry


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
                found = self.registry.alias(PREVIOUS)
                if found is not None and found.version != self.version:
                    self._previous = (found.version, self.registry.load_model(found.version))
            except RegistryError:
                self._previous = None  # a previous that cannot be loaded compares with nothing
        return self._previous
