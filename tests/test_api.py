"""#31 item 8: everything a command does can be done from Python — each ``mlmedic`` command has
its call in the package's public surface, which is sorted and resolves every name."""

from __future__ import annotations

from typing import Any

import typer

import mlmedic
from mlmedic.cli import app

# each command and the public names that do its work
CALLS = {
    "init": ["write_default_configs"],
    "check-data": ["check_file"],
    "fix-data": ["fix_file"],
    "run": ["run_pipeline"],
    "rollback": ["Registry"],
    "models": ["Registry"],
    "adopt": ["adopt"],
    "serve": ["Supervisor"],
    "recover": ["recover_once"],
    "feedback": ["record_feedback", "FeedbackLog"],
    "monitor": ["Monitor"],
    "replay": ["replay"],
    "dashboard": ["build_dashboard"],
    "logs": ["EventStore"],
    "demo": ["run_demo"],
    "release status": ["release_status"],
    "release promote": ["promote_release"],
    "release abort": ["abort_release"],
}


def _commands(group: Any, prefix: str = "") -> list[str]:
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (Typer's own, or click's)
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append(f"{prefix}{name}")
    return found


def test_every_command_has_its_call_in_the_public_api() -> None:
    group = typer.main.get_command(app)
    assert sorted(_commands(group)) == sorted(CALLS)  # a new command names its call here
    missing = {c: n for c, names in CALLS.items() for n in names if n not in mlmedic.__all__}
    assert missing == {}


def test_the_public_surface_is_sorted_and_every_name_resolves() -> None:
    assert mlmedic.__all__ == sorted(mlmedic.__all__)
    for name in mlmedic.__all__:
        assert getattr(mlmedic, name) is not None
