"""Every error mlmedic raises on purpose, under one root.

Each error says what is wrong and what to do, in one line, and carries the context it is about
(the file, the column, the key path). The CLI prints ``str(error)`` and exits with ``exit_code``;
the HTTP app (later) answers with ``status_code``.

    MedicError
    ├── ConfigError              a config file is unreadable, has an unknown key or a wrong type
    ├── ProjectError             the project directory is unusable, or a file would be overwritten
    ├── DataError                input data cannot be used
    │   ├── DataFileError        missing, empty, header-only, corrupt or unsupported file
    │   ├── SchemaError          the data and the contract share no columns / cannot be compared
    │   └── ContractError        a contract cannot be learned or loaded
    └── EventStoreError          the event store cannot be opened or written
"""

from __future__ import annotations

from pathlib import Path


class MedicError(Exception):
    """Root of every error mlmedic raises on purpose; ``str()`` is the one-line user message."""

    exit_code: int = 2
    status_code: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(MedicError):
    """A configuration file cannot be read, or has an unknown key or a value of the wrong type."""

    def __init__(self, file: str | Path, message: str, key_path: str | None = None) -> None:
        self.file = Path(file).name
        self.key_path = key_path
        where = f"{self.file}: {key_path}: " if key_path else f"{self.file}: "
        super().__init__(where + message)


class ProjectError(MedicError):
    """The project directory cannot be used, or a command would overwrite something."""


class DataError(MedicError):
    """Input data cannot be used as it is."""


class DataFileError(DataError):
    """A data file is missing, empty, header-only, corrupt, or of an unsupported format."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


class SchemaError(DataError):
    """The data cannot be compared with the contract at all (for example, no column in common)."""


class ContractError(DataError):
    """A data contract cannot be learned from the reference, or a saved contract cannot be read."""


class EventStoreError(MedicError):
    """The event store cannot be opened or written."""

    exit_code = 3
    status_code = 503
