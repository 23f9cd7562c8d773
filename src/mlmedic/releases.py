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

Examples:
    >>> routes_to_canary("a" * 32, 0.0), routes_to_canary("a" * 32, 1.0)
    (False, True)
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlmedic.errors import UsageError
from mlmedic.events import EventKind, Outcome

RELEASE_FILE = "release.json"
STATUS_FILE = "release-host.json"  # what the release host last said of its candidate
CHALLENGER = "challenger"
RELEASE_TAG = "mlmedic.release"
RUNNING = "running"
ENDED = ("promoted", "retired", "aborted")


@dataclass
class Release:
    """One release: which version is tried beside which champion, how, since when, and how it
    ended."""

    id: str
    version: int
    champion: int
    mode: str  # "shadow" or "canary"
    share: float  # of requests a canary answers (1.0 for a shadow: it scores every one)
    started_at: float
    model_name: str = ""
    state: str = RUNNING
    ended_at: float | None = None
    why: str = ""
    synced: bool = True  # False: a server ended it and the registry does not know yet
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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


def write_release(state_dir: Path, release: Release) -> None:
    """Write the record atomically (write, then rename): a server never reads half of it."""
    write_json(release_path(state_dir), release.to_dict())


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically (write, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2), encoding="utf-8")
    temporary.replace(path)


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


def start_release(project: Any, version: int, champion: int, mode: str, reason: str) -> Release:
    """Make ``version`` the challenger beside ``champion``: exported for the servers first, then
    the alias, the status tag and the record; one ``release`` event."""
    registry = project.registry
    settings = project.settings.self_healing.deployment
    now = project.events.clock.now()
    release = Release(
        id=f"v{version}-{int(now)}",
        version=version,
        champion=champion,
        mode=mode,
        share=settings.canary_share if mode == "canary" else 1.0,
        started_at=now,
        model_name=registry.model_name,
    )
    registry.aliases.warm_serving_cache(version)
    registry.aliases.set_alias(CHALLENGER, version, f"{mode} release: {reason}")
    registry.version_store.tag(version, mode, reason)
    registry.set_tags(version, {RELEASE_TAG: json.dumps(release.to_dict())})
    write_release(project.state_dir, release)
    share = f", {release.share:.0%} of requests" if mode == "canary" else ""
    project.events.record(
        EventKind.RELEASE,
        "start",
        Outcome.SUCCESS,
        message=f"v{version} released as a {mode} beside champion v{champion}{share}: {reason}",
        details=release.to_dict(),
        model_version=version,
    )
    return release


def end_release(
    project: Any,
    release: Release,
    state: str,
    why: str,
    *,
    evidence: dict[str, Any] | None = None,
    by: str = "monitor",
) -> Release:
    """Promote (the challenger becomes champion), retire or abort it (tagged ``rejected``: never
    served, never a fallback). The caller holds the project lock. One event, with the numbers."""
    if state not in ENDED:
        raise ValueError(f"a release ends promoted, retired or aborted, not {state!r}")
    registry = project.registry
    release.state, release.why = state, why
    release.ended_at = project.events.clock.now()
    release.synced = True
    if evidence is not None:
        release.evidence = evidence
    if state == "promoted":
        registry.promote(release.version, reason=f"{release.mode} release promoted: {why}")
    else:
        registry.reject(release.version, f"{release.mode} release {state}: {why}")
    if registry.alias_version(CHALLENGER) == release.version:
        registry.aliases.set_alias(CHALLENGER, None, f"release {state}")
    registry.set_tags(release.version, {RELEASE_TAG: json.dumps(release.to_dict())})
    write_release(project.state_dir, release)
    record_end(project.events, release, by=by)
    return release


def record_end(events: Any, release: Release, *, by: str) -> None:
    outcome = Outcome.SUCCESS if release.state == "promoted" else Outcome.WARNING
    events.record(
        EventKind.RELEASE,
        {"promoted": "promote", "retired": "retire", "aborted": "abort"}[release.state],
        outcome,
        message=f"{release.mode} v{release.version} {release.state} ({by}): {release.why}",
        details={
            **release.to_dict(),
            "by": by,
            "labelled": release.evidence.get("labelled", 0),
            "pairs": release.evidence.get("pairs", 0),
        },
        model_version=release.version,
    )


def end_locally(state_dir: Path, events: Any, release: Release, state: str, why: str) -> bool:
    """A server ends a release it cannot go on with (no MLflow here): the record says so at once,
    unsynced, and the registry watcher tells the registry. Once per release: False when it had
    already ended."""
    current = read_release(state_dir)
    if current is None or current.id != release.id or not current.running:
        return False
    claim = getattr(events, "claim", None)
    try:
        if claim is not None and not claim(f"release-end:{release.id}", seconds=86_400.0):
            return False
    except Exception:  # the store may be down: the local record still ends it
        pass
    current.state, current.why, current.synced = state, why, False
    current.ended_at = events.clock.now()
    write_release(state_dir, current)
    record_end(events, current, by="server")
    return True


def sync_release(project: Any) -> Release | None:
    """The registry watcher's step: an end a server wrote goes to the registry; a challenger
    alias this host does not know yet (set on another host) is exported and followed."""
    registry = project.registry
    local = read_release(project.state_dir)
    if local is not None and not local.synced:
        registry.reject(local.version, f"{local.mode} release {local.state}: {local.why}")
        if registry.alias_version(CHALLENGER) == local.version:
            registry.aliases.set_alias(CHALLENGER, None, f"release {local.state}")
        local.synced = True
        registry.set_tags(local.version, {RELEASE_TAG: json.dumps(local.to_dict())})
        write_release(project.state_dir, local)
        return local
    version = registry.alias_version(CHALLENGER)
    if version is None:
        if local is not None and local.running:  # ended on another host: as it ended there
            ended = _tagged(registry, local.version)
            if ended is None or ended.running:
                local.state, local.why = "retired", "ended on another host"
                ended = local
            write_release(project.state_dir, ended)
        return None
    if local is not None and local.version == version:
        return None
    found = _tagged(registry, version)
    if found is None:
        return None
    registry.aliases.warm_serving_cache(version)
    write_release(project.state_dir, found)
    return found


def _tagged(registry: Any, version: int) -> Release | None:
    """The release as the registry's version tag tells it (None when it tells none)."""
    try:
        return Release.from_dict(json.loads(registry.info(version).tags[RELEASE_TAG]))
    except (KeyError, ValueError, TypeError):
        return None


def choose_mode(project: Any, wanted: str | None, champion: int | None, say: Any) -> str:
    """The release mode of a run: ``wanted`` (``--release``) or ``deployment.release``; a
    release with no champion to compare with is direct (said in one line); a second release
    while one runs is refused (``UsageError``: exit 2)."""
    mode = wanted or project.settings.self_healing.deployment.release
    if mode not in ("direct", "shadow", "canary"):
        raise UsageError(f"--release must be shadow, canary or direct, not {mode!r}")
    if mode == "direct":
        return mode
    if champion is None:
        say(f"[3] release: no champion to compare with, so a {mode} release is direct")
        return "direct"
    running = running_release(project)
    if running is not None:
        raise UsageError(
            f"a {running.mode} release of v{running.version} is running (since "
            f"{_iso(running.started_at)}): end it first with 'mlmedic release promote' or "
            "'mlmedic release abort'"
        )
    return mode


def _iso(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
