"""``mlmedic release status|promote|abort``: a shadow or canary release, seen and decided by a
person before its evidence does (#24)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlmedic.cli import console
from mlmedic.cli.common import AsJson, ProjectDir, app, open_project, plain, print_json
from mlmedic.heal.releases.states import Move

Reason = Annotated[str, typer.Option("--reason", help="Why, for the record.")]
release_app = typer.Typer(
    help="A shadow or canary release: its evidence now (status), or a person's decision.",
    no_args_is_help=True,
)
app.add_typer(release_app, name="release")


@release_app.command("status")
def status(as_json: AsJson = False, project_dir: ProjectDir = Path(".")) -> None:
    """The running release (or the last) and its evidence now: requests, labelled pairs, the
    paired comparison, the candidate's errors and call times, what a verdict would be."""
    from mlmedic.heal.releases.judge import release_status

    project = open_project(project_dir)
    release, verdict = release_status(project)
    if release is None:
        if as_json:
            print_json({"release": None})
            return
        console.out.print("no release yet: 'mlmedic run DATA --release shadow|canary' starts one")
        return
    if as_json:
        print_json({"release": release.to_dict(), "now": verdict.to_dict() if verdict else None})
        return
    say = plain(console.out)
    share = f" ({release.share:.0%} of requests)" if release.mode == "canary" else ""
    say(f"{release.mode} v{release.version}{share} beside champion v{release.champion}")
    say(f"state: {release.state}")
    if verdict is None:
        say(f"ended: {release.why}")
        return
    say(f"requests {verdict.requests:,}; pairs {verdict.pairs:,}; labelled {verdict.labelled:,}")
    if verdict.agreement is not None:
        say(f"agreement {verdict.agreement:.1%}; requests to see 3 points: {verdict.needed:,}")
    if verdict.comparison is not None:
        say(f"comparison: {verdict.comparison['summary']}")
    host = verdict.host
    if host:
        p99 = host.get("call_p99_ms")
        say(
            f"candidate calls {host.get('calls', 0):,}, failed {host.get('failures', 0):,}, "
            f"dropped rows {host.get('dropped_rows', 0):,}, p99 call "
            + (f"{p99:.1f} ms" if p99 is not None else "n/a")
            + f", memory {host.get('rss_mb', 0):.0f} MB"
        )
    say(f"verdict now: {verdict.action} — {verdict.why}")


def _decide(project_dir: Path, move: Move, why: str) -> None:
    from mlmedic.heal.releases.judge import decide_release

    release = decide_release(open_project(project_dir), move, why)
    done = "is champion" if move is Move.PROMOTE else "is retired (the champion stays)"
    console.out.print(f"{release.mode} v{release.version} {done}: {why}", soft_wrap=True)


@release_app.command("promote")
def promote(
    reason: Reason = "",
    project_dir: ProjectDir = Path("."),
) -> None:
    """Make the candidate the champion now, whatever its evidence says."""
    _decide(project_dir, Move.PROMOTE, reason or "promoted by a person (mlmedic release promote)")


@release_app.command("abort")
def abort(
    reason: Reason = "",
    project_dir: ProjectDir = Path("."),
) -> None:
    """End the release now: the candidate is retired, the champion stays."""
    _decide(project_dir, Move.ABORT, reason or "aborted by a person (mlmedic release abort)")
