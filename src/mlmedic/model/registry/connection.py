"""The MLflow client of one project and the one place MLflow failures are classified.

A failure is told apart by what it is, never by its message: a connection that could not be made
or timed out (anywhere in the exception's cause chain, whether ``requests``, ``urllib3``, the
socket layer or a database driver), or an HTTP 5xx/503 error code from the server, is
``RegistryUnavailableError`` (exit 3: try again later); "does not exist" codes are raised as they
are for the caller to turn into None; anything else MLflow refused is ``RegistryError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlmedic.core.errors import RegistryError, RegistryUnavailableError

NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
# MLflow's stores answer an alias that is not set with INVALID_PARAMETER_VALUE, not "not found"
ALIAS_MISSING_CODES = NOT_FOUND_CODES | {"INVALID_PARAMETER_VALUE"}
# codes that mean "the registry cannot answer now", not "you asked for something wrong"
UNAVAILABLE_CODES = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"}
)

# Fail fast when a tracking server goes away instead of MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """MLflow's own warnings (integer-schema hints, deprecations) are noise for our users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def is_local_store(uri: str) -> bool:
    """A tracking URI whose default artifact root would be a relative local folder."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else "file"
    return scheme in ("sqlite", "file", "postgresql", "mysql", "mssql") or len(scheme) == 1


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlmedic"


def _migrated_template() -> Path | None:
    """An empty MLflow database, migrated once per MLflow version and kept in the user's cache
    (``$XDG_CACHE_HOME/mlmedic``); None when the cache cannot be written."""
    import mlflow

    template = _cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    if template.exists():
        return template
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        building = template.with_name(f".{template.name}.{os.getpid()}")
        from mlflow.tracking import MlflowClient

        with quiet():
            uri = f"sqlite:///{building}"
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
        os.replace(building, template)  # whole, or not at all, for a concurrent reader
    except Exception:  # a read-only home, a full disk: the store migrates itself as before
        return None
    return template


def seed_sqlite_store(tracking_uri: str, artifacts: Path) -> None:
    """A new local SQLite registry starts as a copy of an already-migrated empty database
    (about 1 s less per new project than MLflow migrating it), its default experiment's
    artifacts pointed into the project. Never replaces a database that exists."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    target = Path(tracking_uri[len("sqlite:///") :])
    if target.exists() or str(target) == ":memory:":
        return
    template = _migrated_template()
    if template is None:
        return
    import shutil
    import sqlite3

    staging = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        shutil.copyfile(template, staging)
        with contextlib.closing(sqlite3.connect(staging)) as conn, conn:
            conn.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (artifacts.resolve().as_uri(),),
            )
        os.link(staging, target)  # never over a database another process just created
    except (OSError, sqlite3.Error):
        pass
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()


def error_code(exc: BaseException) -> str:
    """MLflow's error code of an exception ('' when it has none)."""
    return str(getattr(exc, "error_code", "") or "")


def _rest_error_code(answer: urllib.error.HTTPError) -> str:
    """The ``error_code`` of an MLflow REST error answer ('' when the body is not one)."""
    import json

    try:
        body = json.loads(answer.read())
    except (OSError, ValueError):
        return ""
    return str(body.get("error_code", "")) if isinstance(body, dict) else ""


def is_not_found(exc: BaseException) -> bool:
    """True when MLflow says the thing asked for does not exist."""
    return error_code(exc) in NOT_FOUND_CODES


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _connection_failure_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError, TimeoutError, urllib.error.URLError]
    with contextlib.suppress(ImportError):
        import requests

        found += [
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.RetryError,  # retries on 5xx answers exhausted
        ]
    with contextlib.suppress(ImportError):
        import urllib3

        found += [urllib3.exceptions.HTTPError]
    with contextlib.suppress(ImportError):
        import sqlalchemy.exc

        # a database that cannot be opened or reached (locked, server down)
        found += [sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError]
    return tuple(found)


def is_unavailable(exc: BaseException) -> bool:
    """True when the failure is the registry not answering, by exception type or error code."""
    kinds = _connection_failure_types()
    for link in _causes(exc):
        if isinstance(link, kinds) or error_code(link) in UNAVAILABLE_CODES:
            return True
    return False


class Connection:
    """An MLflow tracking/registry URI and its client, created (and checked) on first use."""

    def __init__(self, tracking_uri: str, state_dir: Path, model_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.state_dir = Path(state_dir)
        self.model_name = model_name
        # a local store (sqlite or a file path) keeps its artifacts in the project, never in
        # whatever directory the command was started from (MLflow's default is ./mlruns)
        self.local = is_local_store(tracking_uri)
        self._client: Any = None
        # run once, right after the first connection (the registry syncs an offline rollback)
        self.on_connect: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self.check_reachable()
            from mlflow.tracking import MlflowClient

            self.state_dir.mkdir(parents=True, exist_ok=True)
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            seed_sqlite_store(self.tracking_uri, self.state_dir / "mlartifacts")
            self.activate()
            with quiet():
                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
            if self.on_connect is not None:
                self.on_connect()
        return self._client

    def activate(self) -> None:
        """Point MLflow's process-wide URIs (used by ``models:/`` URIs and runs) at this registry.

        MLflow also writes the URI into the environment, where it would leak into this
        process's later registries and into child processes: the user's value is put back.
        """
        import mlflow

        user_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        if user_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = user_uri

    def check_reachable(self, timeout: float = 5.0) -> None:
        """Raise ``RegistryUnavailableError`` unless the tracking server answers ``/health``."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        url = self.tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = str(reason)
        raise RegistryUnavailableError(
            f"MLflow tracking server {self.tracking_uri} is unreachable ({problem}); "
            "start it, or unset MLFLOW_TRACKING_URI to use the project's local registry"
        )

    def call(
        self,
        what: str,
        fn: Any,
        *args: Any,
        missing: frozenset[str] = NOT_FOUND_CODES,
        **kwargs: Any,
    ) -> Any:
        """Run one MLflow call; classify its failure (see the module docstring). An
        ``MlflowException`` whose code is in ``missing`` is raised as it is."""
        from mlflow.exceptions import MlflowException

        try:
            with quiet():
                return fn(*args, **kwargs)
        except RegistryError:
            raise
        except Exception as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            if is_unavailable(exc):
                raise RegistryUnavailableError(
                    f"MLflow at {self.tracking_uri} failed while trying to {what}: "
                    f"{first_line[:200]}"
                ) from exc
            if not isinstance(exc, MlflowException) or error_code(exc) in missing:
                raise
            raise RegistryError(f"MLflow refused to {what}: {first_line[:300]}") from exc

    def quick_alias(self, alias: str, timeout: float = 5.0) -> int | None:
        """The version ``alias`` points at, read without importing MLflow (the import alone
        costs a command about a second): one read-only SQL query on a SQLite store, one call of
        MLflow's REST API (``GET /api/2.0/mlflow/registered-models/alias``) on a server. None
        when the alias is not set; ``LookupError`` when this way cannot tell (another store, an
        unexpected schema or answer) — then ask through the client."""
        if self.tracking_uri.startswith("sqlite:///"):
            import sqlite3

            path = self.tracking_uri[len("sqlite:///") :]
            if not Path(path).exists():
                return None  # no registry yet: no alias
            try:
                with contextlib.closing(
                    sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
                ) as db:
                    row = db.execute(
                        "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                        (self.model_name, alias),
                    ).fetchone()
            except sqlite3.Error as exc:
                raise LookupError(f"cannot read the alias from {path}: {exc}") from exc
            return None if row is None else int(row[0])
        if self.tracking_uri.startswith(("http://", "https://")):
            import json
            import urllib.parse

            query = urllib.parse.urlencode({"name": self.model_name, "alias": alias})
            url = f"{self.tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias?{query}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as answer:
                    return int(json.loads(answer.read())["model_version"]["version"])
            except urllib.error.HTTPError as exc:
                if exc.code in (400, 404) and _rest_error_code(exc) in ALIAS_MISSING_CODES:
                    return None
                raise LookupError(f"HTTP {exc.code} reading the alias") from exc
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise LookupError(f"cannot read the alias: {exc}") from exc
        raise LookupError(f"no quick alias read for {self.tracking_uri}")

    def experiment_id(self) -> str:
        """The project's experiment (``mlmedic/<model>``), created on first use."""
        name = f"mlmedic/{self.model_name}"
        experiment = self.call("read the experiment", self.client.get_experiment_by_name, name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = (self.state_dir / "mlartifacts").resolve().as_uri() if self.local else None
        return str(
            self.call(
                "create the experiment",
                self.client.create_experiment,
                name,
                artifact_location=location,
            )
        )
