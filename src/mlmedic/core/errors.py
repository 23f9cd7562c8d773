"""Every error mlmedic raises on purpose, under one root.

Each error says what is wrong and what to do, in one line, and carries the context it is about
(the file, the column, the key path). The CLI prints ``str(error)`` and exits with ``exit_code``;
the HTTP app (``serving.app``) answers with ``status_code``, which each class carries.

    MedicError                   every class carries its exit code (CLI) and HTTP status (API)
    ├── UsageError               a command's options or arguments cannot be used as given
    ├── ApiError                 a client's request cannot be answered (400)
    │   ├── Unauthorized         no bearer token (401)
    │   ├── Forbidden            a wrong token, or an endpoint switched off (403)
    │   ├── PayloadTooLarge      a body or record count over the limit (413)
    │   ├── InvalidRequest       a field, value or label that is not what the API takes (422)
    │   └── NotReady             no model loaded yet (503)
    ├── ModelLoadError           a model version cannot be loaded or fails its canary (exit 3, 503)
    ├── ConfigError              a config file is unreadable, has an unknown key or a wrong type
    ├── ProjectError             the project directory is unusable, or a file would be overwritten
    │   └── ProjectBusyError     another operation holds the project lock (exit 4)
    ├── DataError                input data cannot be used
    │   ├── DataFileError        missing, empty, header-only, corrupt or unsupported file
    │   ├── DataQualityError     the data still fails its checks after auto-fix (exit 1)
    │   ├── SchemaError          the data and the contract share no columns / cannot be compared
    │   └── ContractError        a contract cannot be learned or loaded
    ├── TrainingError            the data cannot be trained on, or the trainer fails
    ├── RegistryError            the model registry refuses an operation (no such version, ...)
    │   └── RegistryUnavailableError   the MLflow tracking server cannot be reached
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


class UsageError(MedicError):
    """A command's options or arguments cannot be used as given (``--every inf``, say)."""


class ApiError(MedicError):
    """A client mistake, answered with its class's status code and a one-line detail."""

    @property
    def status(self) -> int:
        return self.status_code

    @property
    def detail(self) -> str:
        return self.message


class Unauthorized(ApiError):
    """No bearer token where the endpoint needs one."""

    status_code = 401


class Forbidden(ApiError):
    """A wrong token, or an endpoint that is switched off."""

    status_code = 403


class PayloadTooLarge(ApiError):
    """A body, or a number of records, over the configured limit."""

    status_code = 413


class InvalidRequest(ApiError):
    """A body that is not the request it should be (a field, a value, a label)."""

    status_code = 422


class NotReady(ApiError):
    """The server cannot answer now (no model loaded yet, or a model call that does not return):
    try again later (``Retry-After``)."""

    status_code = 503
    retry_after = 1


class ModelLoadError(MedicError):
    """A version could not be loaded, or failed its canary prediction."""

    exit_code = 3
    status_code = 503


class ConfigError(MedicError):
    """A configuration file cannot be read, or has an unknown key or a value of the wrong type."""

    def __init__(self, file: str | Path, message: str, key_path: str | None = None) -> None:
        self.file = Path(file).name
        self.key_path = key_path
        where = f"{self.file}: {key_path}: " if key_path else f"{self.file}: "
        super().__init__(where + message)


class ProjectError(MedicError):
    """The project directory cannot be used, or a command would overwrite something."""


class ProjectBusyError(ProjectError):
    """Another mlmedic operation holds the project lock and did not finish in time."""

    exit_code = 4
    status_code = 409


class DataError(MedicError):
    """Input data cannot be used as it is."""


class DataFileError(DataError):
    """A data file is missing, empty, header-only, corrupt, or of an unsupported format."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        # a URL is shown as given (a Path would fold s3://b/x into s3:/b/x)
        super().__init__(f"{path if '://' in str(path) else self.path}: {problem}")


class DataQualityError(DataError):
    """The data still fails its checks after auto-fix; the run stops before training."""

    exit_code = 1
    status_code = 422


class SchemaError(DataError):
    """The data cannot be compared with the contract at all (for example, no column in common)."""


class ContractError(DataError):
    """A data contract cannot be learned from the reference, or a saved contract cannot be read."""


class TrainingError(MedicError):
    """The data cannot be trained on (missing or constant target, too few rows) or the trainer
    cannot be imported or fails."""


class RegistryError(MedicError):
    """The model registry refuses an operation: no such version, a rejected version, no
    previous version to roll back to."""

    status_code = 409


class RegistryUnavailableError(RegistryError):
    """The MLflow tracking server or registry store cannot be reached."""

    exit_code = 3
    status_code = 503


class EventStoreError(MedicError):
    """The event store cannot be opened or written."""

    exit_code = 3
    status_code = 503
