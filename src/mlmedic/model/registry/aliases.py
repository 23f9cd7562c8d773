"""Alias moves: promotion, rejection, and rollback online or from the local backups.

Only the aliases ``champion`` and ``previous`` are used (registry stages are deprecated). Every
alias move is also an event, so the history of who served when is kept and an offline rollback
can be made from the event store and the backups alone; the registry follows on the next
connection. Every operation that moves the champion backwards holds the project lock and re-reads
the champion under it.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from mlmedic.core.errors import RegistryError, RegistryUnavailableError
from mlmedic.core.lock import project_lock
from mlmedic.model.registry import pointer
from mlmedic.model.registry.backups import BackupStore
from mlmedic.model.registry.versions import CHAMPION, PREVIOUS, VersionInfo, Versions
from mlmedic.store.events import EventKind, EventLog, Outcome

REJECTED = "rejected"


class Rollback(NamedTuple):
    """A champion move backwards; ``offline`` when it was made from the local backups only."""

    from_version: int
    to_version: int
    offline: bool = False


class Aliases:
    """Moves ``champion`` and ``previous`` of one model, recording each move."""

    def __init__(self, versions: Versions, backups: BackupStore, events: EventLog) -> None:
        self.versions = versions
        self.backups = backups
        self.events = events
        self.connection = versions.connection

    @property
    def model_name(self) -> str:
        return self.connection.model_name

    # ------------------------------------------------------------------ the pointer
    def read_pointer(self) -> dict[str, Any] | None:
        return pointer.read_pointer(self.connection.state_dir)

    def write_pointer(self, version: int, *, synced: bool, backup: str | None = None) -> None:
        pointer.write_pointer(
            self.connection.state_dir,
            model_name=self.model_name,
            version=version,
            tracking_uri=self.connection.tracking_uri,
            synced=synced,
            backup=backup,
            now=self.events.clock.now(),
        )

    # ------------------------------------------------------------------ moves
    def set_alias(self, alias: str, version: int | None, reason: str) -> None:
        before = self.versions.alias(alias)
        old = before.version if before else None
        if old == version:
            return
        client = self.connection.client
        if version is None:
            self.connection.call(
                "delete an alias", client.delete_registered_model_alias, self.model_name, alias
            )
        else:
            self.connection.call(
                "move an alias",
                client.set_registered_model_alias,
                self.model_name,
                alias,
                str(version),
            )
        if alias == CHAMPION and version is not None:
            self.warm_serving_cache(version)
            self.write_pointer(version, synced=True)
        self._record_move(alias, old, version, reason)

    def warm_serving_cache(self, version: int) -> None:
        """Export a new champion for the servers before they are told about it, so a running
        server swaps from a local copy without touching MLflow."""
        target = self.connection.state_dir / "serving-cache" / f"v{version}"
        if (target / "manifest.json").exists():
            return
        try:
            self.backups.export(version, target)
        except Exception as exc:  # the servers fall back to the registry themselves
            logging.getLogger("mlmedic.model.registry").warning(
                "cannot pre-export v%s: %s", version, exc
            )

    def _record_move(
        self, alias: str, old: int | None, new: int | None, reason: str, *, offline: bool = False
    ) -> None:
        details: dict[str, Any] = {"alias": alias, "from": old, "to": new, "reason": reason}
        if offline:
            details["offline"] = True
        self.events.record(
            EventKind.ALIAS,
            f"{alias} {'removed' if new is None else 'set'}{' (offline)' if offline else ''}",
            Outcome.SUCCESS,
            message=f"{alias}: {_v(old)} -> {_v(new)}"
            + (" (local backup; registry pending)" if offline else ""),
            details=details,
            model_version=new,
        )

    def _record_rollback(self, old: int, new: int, reason: str, **extra: Any) -> None:
        offline = bool(extra.get("offline"))
        self.events.record(
            EventKind.ROLLBACK,
            "rollback (offline)" if offline else "rollback",
            Outcome.SUCCESS,
            message=f"rolled back v{old} -> v{new}"
            + (" from the local backup" if offline else "")
            + f": {reason}",
            details={"from_version": old, "to_version": new, "reason": reason, **extra},
            model_version=new,
        )

    def promote(self, version: int, reason: str) -> VersionInfo | None:
        """Make ``version`` the champion; the old champion becomes ``previous``. Returns it.
        A version tagged ``rejected`` (the gate refused it, or its release was retired or
        aborted) is never promoted: ``RegistryError``."""
        found = self.versions.info(version)
        if found.status == REJECTED:
            raise RegistryError(
                f"v{version} is tagged rejected ({found.reason or 'no reason recorded'}): "
                "a rejected version is never made champion"
            )
        old = self.versions.alias(CHAMPION)
        if old is not None and old.version != version:
            self.set_alias(PREVIOUS, old.version, f"v{version} became champion")
            self.versions.tag(old.version, "retired")
        self.set_alias(CHAMPION, version, reason)
        self.versions.tag(version, "champion", reason)
        return old

    def reject(self, version: int, reason: str) -> None:
        """Keep a failed candidate in the registry, tagged rejected, never served."""
        self.versions.tag(version, REJECTED, reason)

    # ------------------------------------------------------------------ history
    def champion_history(self) -> list[int]:
        """The versions that were champion, in order (from the event store)."""
        history: list[int] = []
        for event in self.events.query(kind=EventKind.ALIAS):
            if event.details.get("alias") == CHAMPION and event.details.get("to") is not None:
                history.append(int(event.details["to"]))
        return history

    def _alias_from_events(self, alias: str) -> int | None:
        """Where ``alias`` last pointed, according to the event store."""
        moves = [
            e for e in self.events.query(kind=EventKind.ALIAS) if e.details.get("alias") == alias
        ]
        if not moves:
            return None
        last = moves[-1].details.get("to")
        return None if last is None else int(last)

    def _previous_after_rollback(self, current: int, target: int) -> int | None:
        """After rolling back from ``current`` to ``target``, ``previous`` is the version that
        was champion just before ``target`` last became champion."""
        history = [v for v in self.champion_history() if v != current]
        earlier = history[: _last_index(history, target)]
        before_target = [v for v in earlier if v != target]
        return before_target[-1] if before_target else None

    # ------------------------------------------------------------------ rollback
    def rollback(
        self, to: int | None = None, *, reason: str = "manual rollback", by: str = "person"
    ) -> Rollback:
        """Move the champion back to ``previous`` (or to version ``to``).

        Refuses a version that does not exist or was rejected, and a rollback with nowhere to go.
        When the tracking server is unreachable, rolls back from the local backups instead.
        """

        with project_lock(self.connection.state_dir, f"rollback ({reason})"):
            try:
                return self._rollback_online(to, reason, by)
            except RegistryUnavailableError as exc:
                return self.rollback_offline(to, reason=reason, cause=exc, by=by)

    def _no_previous(self, champion: int) -> RegistryError:
        return RegistryError(
            f"model '{self.model_name}' has no previous version to roll back to "
            f"(champion is v{champion})"
        )

    def _rollback_online(self, to: int | None, reason: str, by: str = "person") -> Rollback:
        current = self.versions.alias(CHAMPION)
        if current is None:
            raise RegistryError(f"model '{self.model_name}' has no champion to roll back from")
        if to is None:
            previous = self.versions.alias(PREVIOUS)
            if previous is None:
                raise self._no_previous(current.version)
            target = previous
        else:
            target = self.versions.info(to)
        if target.status == "rejected":
            raise RegistryError(
                f"v{target.version} was rejected by the gate ({target.reason or 'no reason'}); "
                "refusing to serve it"
            )
        if target.status == "candidate":
            raise RegistryError(f"v{target.version} never passed the gate; refusing to serve it")
        if target.version == current.version:
            raise RegistryError(f"v{target.version} is already the champion")
        new_previous = self._previous_after_rollback(current.version, target.version)
        self.set_alias(CHAMPION, target.version, reason)
        self.versions.tag(target.version, "champion", reason)
        self.versions.tag(current.version, "rolled-back", reason)
        self.set_alias(PREVIOUS, new_previous, f"rollback to v{target.version}")
        self._record_rollback(current.version, target.version, reason, by=by)
        return Rollback(current.version, target.version)

    def rollback_offline(
        self,
        to: int | None = None,
        *,
        reason: str = "manual rollback",
        cause: Exception | None = None,
        by: str = "person",
    ) -> Rollback:
        """Roll back with the registry unreachable: point ``.mlmedic/champion.json`` at the local
        backup of the target version. The registry's aliases follow on the next connection."""
        why = f" ({cause})" if cause else ""
        record = self.read_pointer()
        if record is None or record.get("model_name") != self.model_name:
            raise RegistryUnavailableError(
                f"cannot roll back: the registry is unreachable{why} and this project has no "
                "local record of its champion"
            )
        current = int(record["version"])
        if to is None:
            previous = self._alias_from_events(PREVIOUS)
            if previous is None:
                raise self._no_previous(current)
            target = previous
        else:
            target = to
        rejected = {
            int(e.model_version)
            for e in self.events.query(kind=EventKind.GATE, outcome=Outcome.FAILURE)
            if e.model_version is not None
        }
        if target in rejected:
            raise RegistryError(f"v{target} was rejected by the gate; refusing to serve it")
        if target == current:
            raise RegistryError(f"v{target} is already the champion")
        if not self.backups.has(target):
            raise RegistryUnavailableError(
                f"cannot roll back to v{target}: the registry is unreachable{why} and there is no "
                f"local backup of v{target} in {self.backups.folder}"
            )
        backup = str(self.backups.path(target))
        new_previous = self._previous_after_rollback(current, target)
        self.write_pointer(target, synced=False, backup=backup)
        self._record_move(PREVIOUS, target, new_previous, reason, offline=True)
        self._record_move(CHAMPION, current, target, reason, offline=True)
        self._record_rollback(
            current, target, reason, offline=True, backup=backup, registry="pending"
        )
        return Rollback(current, target, offline=True)

    def sync_pointer(self) -> None:
        """After an offline rollback, move the registry's aliases to match the local champion."""
        record = self.read_pointer()
        if not record or record.get("synced", True) or record.get("model_name") != self.model_name:
            return
        target = int(record["version"])
        current = self.versions.alias(CHAMPION)
        if current is None or current.version != target:
            previous = self._alias_from_events(PREVIOUS)
            self.set_alias(CHAMPION, target, "sync of an offline rollback")
            self.versions.tag(target, "champion", "offline rollback")
            if current is not None:
                self.versions.tag(current.version, "rolled-back", "offline rollback")
            self.set_alias(PREVIOUS, previous, "sync of an offline rollback")
        self.write_pointer(target, synced=True)


def _v(version: int | None) -> str:
    return "(none)" if version is None else f"v{version}"


def _last_index(values: list[int], value: int) -> int:
    for position in range(len(values) - 1, -1, -1):
        if values[position] == value:
            return position
    return len(values)
