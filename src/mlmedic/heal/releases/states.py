"""Releases judged on live traffic (#24): a candidate that passed the gate is served as a
*shadow* (scored on every request beside the champion, off the response path, never returned)
or a *canary* (answering a stable share of requests), until live labels promote or retire it.

The release is recorded three ways, as the champion is: in the registry (the ``challenger``
alias — MLflow's own name for the version under trial beside the ``champion`` — and the
version's ``mlmedic.status`` tag ``shadow`` or ``canary``), in ``.mlmedic/release.json`` (what
every server on this host follows, without MLflow; the registry watcher mirrors the alias into it
on every other host), and as ``release`` events. A server may end a release on its own (the
candidate crashed, hung, leaked memory or failed a burst of requests): it writes the record with
``synced: false`` and the watcher carries the end to the registry.

A release is one state machine (#31): a ``State`` (running, then promoted, retired or aborted —
ended for good), moved only by ``transition``, which re-reads the record under the release lock,
takes the one end claim every host shares, and refuses a move out of an ended state
(``ReleaseStateError``): a candidate a crash aborted can never be promoted after it.

Examples:
    >>> routes_to_canary("a" * 32, 0.0), routes_to_canary("a" * 32, 1.0)
    (False, True)
    >>> State.ABORTED.ended, Move.EXPIRE.to
    (True, <State.RETIRED: 'retired'>)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlmedic.core.clock import to_iso
from mlmedic.core.errors import EventStoreError, UsageError
from mlmedic.core.jsonvalues import write_json
from mlmedic.store.events import EventKind, Outcome

log = logging.getLogger("mlmedic.release")
RELEASE_FILE = "release.json"
RELEASE_LOCK = "release.lock"  # held for one read-decide-write of the record, never longer
STATUS_FILE = "release-host.json"  # what the release host last said of its candidate
CHALLENGER = "challenger"
RELEASE_TAG = "mlmedic.release"


class Mode(StrEnum):
    """How a candidate that passed the gate reaches traffic."""

    DIRECT = "direct"  # it becomes champion at once
    SHADOW = "shadow"  # scored on every request, never answering
    CANARY = "canary"  # answering a stable share of requests

    @classmethod
    def parse(cls, value: str) -> Mode:
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"--release must be direct, shadow or canary, not {value!r}") from None


class State(StrEnum):
    """Where a release is: running, or ended for good in one of three ways."""

    RUNNING = "running"
    PROMOTED = "promoted"
    RETIRED = "retired"
    ABORTED = "aborted"

    @property
    def ended(self) -> bool:
        return self is not State.RUNNING


class Move(StrEnum):
    """The transitions of a release; each but ``START`` ends it in ``to``."""

    START = "start"
    PROMOTE = "promote"  # the evidence (or a person) says it is at least as good
    RETIRE = "retire"  # the evidence says it is worse
    ABORT = "abort"  # it failed (crash, hang, leak, error burst), or a person stopped it
    EXPIRE = "expire"  # it outlived max_duration_hours or max_requests without a verdict

    @property
    def to(self) -> State:
        return {
            Move.START: State.RUNNING,
            Move.PROMOTE: State.PROMOTED,
            Move.RETIRE: State.RETIRED,
            Move.ABORT: State.ABORTED,
            Move.EXPIRE: State.RETIRED,
        }[self]


class ReleaseStateError(UsageError):
    """A move the release's state does not allow (it ended already, or another release runs)."""


@dataclass
class Release:
    """One release: which version is tried beside which champion, how, since when, and how it
    ended."""

    id: str
    version: int
    champion: int
    mode: Mode  # shadow or canary
    share: float  # of requests a canary answers (1.0 for a shadow: it scores every one)
    started_at: float
    model_name: str = ""
    state: State = State.RUNNING
    ended_at: float | None = None
    why: str = ""
    synced: bool = True  # False: a server ended it and the registry does not know yet
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mode, self.state = Mode(self.mode), State(self.state)

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mode": str(self.mode), "state": str(self.state)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def release_path(state_dir: Path) -> Path:
    return Path(state_dir) / RELEASE_FILE


def read_release(state_dir: Path) -> Release | None:
    """The newest release this host knows of (running or ended), or None."""
    try:
        return Release.from_dict(json.loads(release_path(state_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def release_lock(state_dir: Path) -> Iterator[None]:
    """Hold ``.mlmedic/release.lock`` for one read-decide-write of the record (every process of
    this host: the monitor, a person's command, the supervisor, a worker)."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(state_dir) / RELEASE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def write_release(state_dir: Path, release: Release) -> None:
    """Write the record atomically (write, then rename): a server never reads half of it."""
    write_json(release_path(state_dir), release.to_dict())


def host_status(state_dir: Path, release: Release | None = None) -> dict[str, Any] | None:
    """The release host's newest status (its candidate's calls, failures, call times, memory),
    if it is about ``release`` (any, when None)."""
    try:
        found = dict(json.loads((Path(state_dir) / STATUS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if release is not None and found.get("release") != release.id:
        return None
    return found


def routes_to_canary(request_id: str, share: float) -> bool:
    """Whether a request goes to the canary: by a hash of its id, so every worker and every
    replica splits the same way, and a client retrying with the same id gets the same model."""
    return zlib.crc32(request_id.encode("utf-8")) / 4_294_967_296.0 < share


def running_release(project: Any) -> Release | None:
    found = read_release(project.state_dir)
    if found is None or not found.running:
        return None
    if found.model_name and found.model_name != project.registry.model_name:
        return None
    return found


def start_release(project: Any, version: int, champion: int, mode: Mode, reason: str) -> Release:
    """``Move.START``: make ``version`` the challenger beside ``champion`` — exported for the
    servers first, then the alias, the status tag and the record; one ``release`` event. Refused
    while another release runs (re-read under the release lock)."""
    registry = project.registry
    settings = project.settings.self_healing.deployment
    now = project.events.clock.now()
    mode = Mode(mode)
    release = Release(
        id=f"v{version}-{int(now)}",
        version=version,
        champion=champion,
        mode=mode,
        share=settings.canary_share if mode is Mode.CANARY else 1.0,
        started_at=now,
        model_name=registry.model_name,
    )
    with release_lock(project.state_dir):
        _refuse_a_second(running_release(project))
        registry.aliases.warm_serving_cache(version)
        registry.aliases.set_alias(CHALLENGER, version, f"{mode} release: {reason}")
        registry.version_store.tag(version, str(mode), reason)
        registry.set_tags(version, {RELEASE_TAG: json.dumps(release.to_dict())})
        write_release(project.state_dir, release)
    share = f", {release.share:.0%} of requests" if mode is Mode.CANARY else ""
    project.events.record(
        EventKind.RELEASE,
        str(Move.START),
        Outcome.SUCCESS,
        message=f"v{version} released as a {mode} beside champion v{champion}{share}: {reason}",
        details=release.to_dict(),
        model_version=version,
    )
    return release


def transition(
    state_dir: Path,
    events: Any,
    release: Release,
    move: Move,
    why: str,
    *,
    evidence: dict[str, Any] | None = None,
    by: str = "monitor",
) -> Release:
    """The one way a release ends: under the release lock, the record is read again and the
    move refused (``ReleaseStateError``) unless that very release still runs and this caller
    wins its end claim (one per release on every host sharing the event store); then the ended
    record is written, unsynced, and one event says who ended it and why. The registry follows
    (``settle``): here for the monitor and a person, from the watcher for a server."""
    if move is Move.START:
        raise ValueError("a release starts with start_release(), not transition()")
    with release_lock(state_dir):
        current = read_release(state_dir)
        if current is None or current.id != release.id:
            raise ReleaseStateError(
                f"the {release.mode} release of v{release.version} is not the one this host"
                " runs: nothing was changed"
            )
        if not current.running:
            raise ReleaseStateError(
                f"the {current.mode} release of v{current.version} already ended "
                f"{current.state} ({current.why}): it cannot {move} now"
            )
        if not _won_end_claim(events, current):
            raise ReleaseStateError(
                f"the {current.mode} release of v{current.version} was ended by another"
                " process: nothing was changed"
            )
        current.state, current.why, current.synced = move.to, why, False
        current.ended_at = events.clock.now()
        if evidence is not None:
            current.evidence = evidence
        write_release(state_dir, current)
    record_end(events, current, by=by, move=move)
    return current


def _won_end_claim(events: Any, release: Release) -> bool:
    claim = getattr(events, "claim", None)
    if claim is None:
        return True
    try:
        return bool(claim(f"release-end:{release.id}", seconds=86_400.0))
    except EventStoreError as exc:  # the store is down: this host's record still ends it
        log.warning("release %s ended without the shared claim: %s", release.id, exc)
        return True


def end_release(
    project: Any,
    release: Release,
    move: Move,
    why: str,
    *,
    evidence: dict[str, Any] | None = None,
    by: str = "monitor",
) -> Release:
    """End ``release`` by ``move`` (``transition``) and carry the end to the registry: promoted,
    the challenger becomes champion; retired or aborted, it is tagged ``rejected`` (never
    served, never a fallback). The caller holds the project lock."""
    ended = transition(
        project.state_dir, project.events, release, move, why, evidence=evidence, by=by
    )
    settle(project, ended)
    return ended


def settle(project: Any, release: Release) -> None:
    """An ended release's registry side: the champion moved or the candidate rejected, the
    challenger alias gone, the version's release tag; then the record is marked synced."""
    registry = project.registry
    if release.state is State.PROMOTED:
        registry.promote(release.version, reason=f"{release.mode} release promoted: {release.why}")
    else:
        registry.reject(release.version, f"{release.mode} release {release.state}: {release.why}")
    if registry.alias_version(CHALLENGER) == release.version:
        registry.aliases.set_alias(CHALLENGER, None, f"release {release.state}")
    release.synced = True
    registry.set_tags(release.version, {RELEASE_TAG: json.dumps(release.to_dict())})
    with release_lock(project.state_dir):
        current = read_release(project.state_dir)
        if current is None or current.id == release.id:
            write_release(project.state_dir, release)


_ACTIONS = {State.PROMOTED: "promote", State.RETIRED: "retire", State.ABORTED: "abort"}


def record_end(events: Any, release: Release, *, by: str, move: Move | None = None) -> None:
    outcome = Outcome.SUCCESS if release.state is State.PROMOTED else Outcome.WARNING
    events.record(
        EventKind.RELEASE,
        _ACTIONS[release.state],
        outcome,
        message=f"{release.mode} v{release.version} {release.state} ({by}): {release.why}",
        details={
            **release.to_dict(),
            "by": by,
            "move": str(move or _ACTIONS[release.state]),
            "labelled": release.evidence.get("labelled", 0),
            "pairs": release.evidence.get("pairs", 0),
        },
        model_version=release.version,
    )


def end_locally(state_dir: Path, events: Any, release: Release, why: str) -> bool:
    """A server aborts a release it cannot go on with (no MLflow here): the record says so at
    once, unsynced, and the registry watcher tells the registry. False when the release had
    already ended (here or on another host): nothing changes then."""
    try:
        transition(state_dir, events, release, Move.ABORT, why, by="server")
    except ReleaseStateError:
        return False
    return True


def sync_release(project: Any) -> Release | None:
    """The registry watcher's step: an end a server wrote goes to the registry; a challenger
    alias this host does not know yet (set on another host) is exported and followed."""
    registry = project.registry
    local = read_release(project.state_dir)
    if local is not None and not local.synced and not local.running:
        settle(project, local)
        return local
    version = registry.alias_version(CHALLENGER)
    if version is None:
        if local is not None and local.running:  # ended on another host: as it ended there
            ended = _tagged(registry, local.version)
            if ended is None or ended.running:
                local.state, local.why = State.RETIRED, "ended on another host"
                ended = local
            with release_lock(project.state_dir):
                write_release(project.state_dir, ended)
        return None
    if local is not None and local.version == version:
        return None
    found = _tagged(registry, version)
    if found is None:
        return None
    registry.aliases.warm_serving_cache(version)
    with release_lock(project.state_dir):
        write_release(project.state_dir, found)
    return found


def _tagged(registry: Any, version: int) -> Release | None:
    """The release as the registry's version tag tells it (None when it tells none)."""
    try:
        return Release.from_dict(json.loads(registry.info(version).tags[RELEASE_TAG]))
    except (KeyError, ValueError, TypeError):
        return None


def choose_mode(project: Any, wanted: str | None, champion: int | None, say: Any) -> Mode:
    """The release mode of a run: ``wanted`` (``--release``) or ``deployment.release``; a
    release with no champion to compare with is direct (said in one line); a second release
    while one runs is refused (``ReleaseStateError``: exit 2)."""
    mode = Mode.parse(wanted or project.settings.self_healing.deployment.release)
    if mode is Mode.DIRECT:
        return mode
    if champion is None:
        say(f"[3] release: no champion to compare with, so a {mode} release is direct")
        return Mode.DIRECT
    _refuse_a_second(running_release(project))
    return mode


def _refuse_a_second(running: Release | None) -> None:
    if running is not None:
        raise ReleaseStateError(
            f"a {running.mode} release of v{running.version} is running (since "
            f"{to_iso(running.started_at)}): end it first with 'mlmedic release promote' or "
            "'mlmedic release abort'"
        )
