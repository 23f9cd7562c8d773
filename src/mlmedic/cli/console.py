"""The two consoles every command prints to (read through this module, so a test or an embedding
can swap them): ``out`` for results, ``err`` for errors and, with ``--json``, the narration."""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
