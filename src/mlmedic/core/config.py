"""The two configuration files, ``self_healing_config.json`` and ``monitoring_config.json``.

They keep the format of the design mlmedic comes from, so its files load unchanged. Unknown keys and
values of the wrong type are errors that name the file and the key path; a missing file means
defaults. Where ``monitoring_config.json`` repeats a drift setting (``drift_threshold``,
``retraining_cooldown_hours``, ``enable_auto_retrain``), the monitoring file wins: it is the more
specific of the two. ``Settings`` exposes the resolved values.

Examples:
    >>> settings = Settings()
    >>> settings.self_healing.model_validation.min_accuracy_threshold
    0.7
    >>> settings.drift_threshold
    0.5
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlmedic.core.errors import ConfigError, ProjectError

SELF_HEALING_FILE = "self_healing_config.json"
MONITORING_FILE = "monitoring_config.json"


class _Section(BaseModel):
    """Strict: unknown keys and wrong JSON types are errors, nothing is silently coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class SelfHealingSection(_Section):
    enabled: bool = True
    description: str = "Self-healing configuration for the mlmedic pipeline"


class DataQualityConfig(_Section):
    auto_fix_enabled: bool = True
    fix_missing_values: bool = True
    fix_outliers: bool = True
    fix_duplicates: bool = True
    fix_types: bool = True
    fix_unseen_categories: bool = True
    outlier_threshold_iqr: float = Field(3.0, gt=0.0)
    validation_on_ingestion: bool = True
    max_missing_fraction_per_row: float = Field(0.5, ge=0.0, le=1.0)
    target_column: str | None = None
    # the column holding each row's time (data time): never a model feature; a version's
    # contract keeps it, 'monitor --batch' passes at its newest value, 'replay' cuts by it
    time_column: str | None = None


RecipeName = Literal["newest", "recency_weighted", "reference_plus_newest"]
_RECIPES: tuple[RecipeName, ...] = ("newest", "recency_weighted", "reference_plus_newest")


class ModelTrainingConfig(_Section):
    auto_backup_enabled: bool = True
    backup_retention_days: int = Field(30, ge=0)
    max_backups: int = Field(10, ge=1)
    auto_retry_on_failure: bool = True
    max_training_retries: int = Field(3, ge=0)
    model_name: str | None = None
    trainer: str | None = None
    # what the target holds: "auto" tells it from the values (numbers with many distinct
    # values: regression); a retrain keeps the champion's task
    task: Literal["auto", "classification", "regression"] = "auto"
    # what a monitor's retrain trains (one candidate each, the best on the newest labelled rows
    # none of them saw is gated): the newest labelled rows only; every labelled row (reference
    # included) weighted by recency in data time; the reference plus the newest rows
    retrain_recipes: list[RecipeName] = Field(
        default_factory=lambda: list(_RECIPES), min_length=1, max_length=len(_RECIPES)
    )
    # the half-life of a labelled row's weight in the recency_weighted recipe, in hours of data
    # time (null: the retraining cooldown, or one monitoring interval when that is 0)
    recency_half_life_hours: float | None = Field(None, gt=0.0)
    # Loading a pickled model runs whatever code it carries: off unless the user says so here.
    allow_pickle_models_executing_code: bool = False


class ModelValidationConfig(_Section):
    auto_rollback_enabled: bool = True
    # classification only: min_accuracy_threshold, min_f1_threshold, f1_scaled_by_prevalence,
    # performance_degradation_threshold (accuracy points). Regression only: min_r2_threshold,
    # max_rmse_ratio_to_baseline, max_error_increase. Both: the rest
    min_accuracy_threshold: float = Field(0.70, ge=0.0, le=1.0)
    min_f1_threshold: float = Field(0.65, ge=0.0, le=1.0)
    # min_f1_threshold holds for balanced classes; with a rarer positive class it is scaled by
    # the F1 of predicting the positive class for everyone (2p/(1+p)) against its balanced value
    # (2/3): 0.65 on a 50 % positive table, 0.325 on a 20 % one (binary models only)
    f1_scaled_by_prevalence: bool = True
    rollback_on_degradation: bool = True
    # the smallest accuracy drop that counts (a window against validation, a candidate against
    # the champion), and then only when it is also significant at evidence_confidence
    performance_degradation_threshold: float = Field(0.02, ge=0.0, le=1.0)
    # one-sided confidence at which a drop, a win or a loss counts as evidence
    evidence_confidence: float = Field(0.95, ge=0.5, lt=1.0)
    # a candidate under the absolute floors still replaces a champion that scores under them on
    # the same rows, when it is significantly better there
    replace_failing_champion: bool = True
    # a monitor's retrain deploys only a candidate significantly better than the champion on the
    # newest labelled rows (at evidence_confidence): one that is not, heals nothing shown
    retrain_must_beat_champion: bool = True
    # regression: R² on the rows judged at least this
    min_r2_threshold: float = Field(0.0, le=1.0)
    # regression: RMSE at most this share of the naive baseline's (the training mean for every
    # row) on the same rows: 1.0 = beat predicting the mean
    max_rmse_ratio_to_baseline: float = Field(1.0, gt=0.0)
    # regression: the smallest rise of the mean absolute error that counts (relative: 0.10 is a
    # tenth more error), a candidate against the champion or a window against validation, and
    # then only when it is also significant at evidence_confidence
    max_error_increase: float = Field(0.10, ge=0.0)


class DriftDetectionConfig(_Section):
    auto_retrain_enabled: bool = True
    drift_threshold: float = Field(0.5, ge=0.0, le=1.0)
    retraining_cooldown_hours: float = Field(24.0, ge=0.0)
    min_samples_for_detection: int = Field(100, ge=1)  # rows for drift, labelled rows for accuracy
    alert_on_drift: bool = True
    monitor_features: bool = True
    monitor_predictions: bool = True
    # "impact": drift alone alerts; a retrain needs evidence of harm (measured drop, estimated
    # drop beyond its uncertainty, or drift in the features the model relies on).
    # "drift": the original rule — score > threshold (or a measured drop) -> cooldown -> retrain.
    retrain_on: Literal["impact", "drift"] = "impact"
    # size of the reference windows a version's drift thresholds are calibrated on (None: the
    # smaller of 1,000 rows and a tenth of the reference)
    reference_window_rows: int | None = Field(None, ge=10)


RecoveryMethod = Literal["restart", "clear_cache", "rollback"]
_METHODS: tuple[RecoveryMethod, ...] = ("restart", "clear_cache", "rollback")


class ServiceRecoveryConfig(_Section):
    auto_recovery_enabled: bool = True
    health_check_interval_seconds: float = Field(60.0, gt=0.0)
    max_recovery_attempts: int = Field(3, ge=1)
    recovery_delay_seconds: float = Field(5.0, ge=0.0)
    recovery_methods: list[RecoveryMethod] = Field(default_factory=lambda: list(_METHODS))
    alert_on_failure: bool = True


class ServingConfig(_Section):
    """The API server (mlmedic addition): where it listens and how it batches and swaps."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_batch_size: int = Field(64, ge=1)
    batch_wait_ms: float = Field(2.0, ge=0.0, le=1000.0)
    max_records_per_request: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    registry_poll_seconds: float = Field(3.0, gt=0.0)
    prediction_log_flush_seconds: float = Field(0.2, gt=0.0)
    crash_loop_window_seconds: float = Field(300.0, ge=0.0)
    healthy_reset_seconds: float = Field(600.0, gt=0.0)
    warm_standby: bool = True
    # a worker whose event loop stops beating, or whose model call runs, this long is hung: its
    # waiting requests get 503 with Retry-After and the supervisor replaces it from the standby
    # (raise it for a model whose one call on max_records_per_request rows takes longer)
    hang_seconds: float = Field(2.0, gt=0.0)
    # with MLMEDIC_API_TOKEN set, the paths answered without it (the probes of a load balancer
    # or the kubelet); every other path needs the token (the admin paths need their own)
    open_paths: list[str] = Field(default_factory=lambda: ["/health", "/ready"])
    # where predictions/ and feedback/ live: null is .mlmedic/ in the project; an fsspec URL
    # (a shared directory, s3://bucket/prefix) is shared by every replica and the monitor
    prediction_log_url: str | None = None

    @field_validator("open_paths")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path.startswith("/") or path.startswith("/admin/"):
                raise ValueError(f"{path!r}: an open path starts with / and is not an admin path")
        return paths


class MonitoringPaths(_Section):
    reference_data_path: str | None = None
    production_data_path: str | None = None
    reports_dir: str = "monitoring/reports"
    # each pass also logged to an MLflow run of the champion ("monitor vN": drift score,
    # accuracy and drifted features as metrics, the report as JSON and HTML artifacts)
    mlflow_reports: bool = True
    metrics_dir: str = "monitoring/metrics"
    alerts_dir: str = "monitoring/alerts"
    batch_monitoring_enabled: bool = True
    real_time_monitoring_enabled: bool = False
    # labelled production rows kept for retraining (since the champion was deployed): at most
    # this many, the most recent, none older than this many days
    production_rows_max: int = Field(100_000, ge=0)
    production_rows_max_age_days: float = Field(30.0, gt=0.0)


class LoggingConfig(_Section):
    recovery_log_path: str = "logs/recovery_log.json"
    rollback_log_path: str = "logs/rollback_log.json"
    retraining_log_path: str = "logs/retraining_log.json"
    retention_days: int = Field(90, ge=1)


_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_secrets(value: str) -> str:
    """``value`` with each ``${NAME}`` replaced by the environment variable ``NAME`` (a
    ``ValueError`` naming it when it is not set): secrets stay out of the config file."""

    def one(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in os.environ:
            raise ValueError(f"the environment variable {name} (named as ${{{name}}}) is not set")
        return os.environ[name]

    return _SECRET.sub(one, value)


class WebhookConfig(_Section):
    """One webhook (mlmedic addition): where, in which shape, with which headers."""

    url: str
    format: Literal["json", "slack", "alertmanager"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)  # values may name ${ENV_VARS}


class NotificationsConfig(_Section):
    enabled: bool = False
    email_alerts: bool = False
    slack_webhook: str | None = None
    alert_on_drift: bool = True
    alert_on_rollback: bool = True
    alert_on_recovery: bool = True
    # mlmedic additions: more webhooks, retries, and e-mail (used when email_alerts is true)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    retries: int = Field(3, ge=0, le=10)  # more attempts for a failure that may pass
    retry_backoff_seconds: float = Field(0.5, ge=0.0, le=60.0)  # doubled after each attempt
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_username: str | None = None  # may name ${ENV_VARS}
    smtp_password: str | None = None  # write ${SMTP_PASSWORD}, not the password
    smtp_ca_file: str | None = None  # CA bundle for the server's certificate (default: system)
    email_from: str = "mlmedic@localhost"
    email_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _email_needs_a_server(self) -> NotificationsConfig:
        if self.email_alerts and (not self.smtp_host or not self.email_to):
            raise ValueError("email_alerts needs smtp_host and at least one address in email_to")
        if self.smtp_password and not self.smtp_username:
            raise ValueError("smtp_password needs smtp_username")
        if self.enabled:  # a secret that is not there is an error now, not a lost alert later
            named = [self.slack_webhook, self.smtp_username, self.smtp_password]
            named += [w.url for w in self.webhooks]
            named += [v for w in self.webhooks for v in w.headers.values()]
            for value in named:
                if value:
                    expand_secrets(value)
        return self


class EventsConfig(_Section):
    """Where the event store lives (mlmedic addition): ``null`` is ``.mlmedic/events.db`` in the
    project; a ``postgresql://`` URL shares one store between hosts. ``MLMEDIC_EVENTS_URL`` wins."""

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _a_known_store(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(
            ("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///")
        ):
            raise ValueError("expected a postgresql:// or sqlite:/// URL, or null")
        return url


class DeploymentConfig(_Section):
    """How a candidate that passed the gate reaches traffic (mlmedic addition, #24): at once
    (``direct``), scored beside the champion and never returned (``shadow``), or answering
    ``canary_share`` of requests (``canary``) until live labels promote or retire it."""

    release: Literal["direct", "shadow", "canary"] = "direct"
    canary_share: float = Field(0.1, gt=0.0, lt=1.0)
    min_labelled_requests: int = Field(200, ge=10)  # paired labelled rows before a verdict
    not_worse_margin: float = Field(0.01, ge=0.0, le=1.0)  # accuracy points; a share of MAE
    max_duration_hours: float = Field(72.0, gt=0.0)
    max_requests: int = Field(1_000_000, ge=1)
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)  # of the candidate's calls
    error_burst: int = Field(5, ge=1)  # canary failures in a row that abort at once
    max_memory_mb: float = Field(2048.0, gt=0.0)  # of the process that scores the candidate
    max_latency_ms: float | None = Field(None, gt=0.0)  # the candidate's p99 call (null: shown)
    decide_without_labels: bool = False  # agreement and the label-free estimate may decide


class CiCdConfig(_Section):
    continue_on_error: bool = False
    fail_fast: bool = False
    auto_fix_tests: bool = True
    parallel_execution: bool = True


class SelfHealingConfig(_Section):
    """``self_healing_config.json``: one section per self-healing stage."""

    self_healing: SelfHealingSection = Field(default_factory=SelfHealingSection)
    data_quality: DataQualityConfig = Field(default_factory=DataQualityConfig)
    model_training: ModelTrainingConfig = Field(default_factory=ModelTrainingConfig)
    model_validation: ModelValidationConfig = Field(default_factory=ModelValidationConfig)
    drift_detection: DriftDetectionConfig = Field(default_factory=DriftDetectionConfig)
    service_recovery: ServiceRecoveryConfig = Field(default_factory=ServiceRecoveryConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringPaths = Field(default_factory=MonitoringPaths)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    ci_cd: CiCdConfig = Field(default_factory=CiCdConfig)


class MonitoringConfig(_Section):
    """``monitoring_config.json``: the schedule, and optional overrides of the drift settings."""

    monitoring_interval_hours: float = Field(6.0, gt=0.0)
    drift_threshold: float | None = Field(None, ge=0.0, le=1.0)
    retraining_cooldown_hours: float | None = Field(None, ge=0.0)
    enable_auto_retrain: bool | None = None
    # a Dask scheduler (tcp://host:8786): each window of the prediction log is profiled there,
    # part file by part file, and merged (mlmedic addition; `monitor --dask` wins)
    dask_scheduler: str | None = None


class Settings(BaseModel):
    """Both files, loaded; the properties resolve settings the two files may both hold."""

    model_config = ConfigDict(frozen=True)

    self_healing: SelfHealingConfig = Field(default_factory=SelfHealingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @property
    def drift_threshold(self) -> float:
        own = self.monitoring.drift_threshold
        return own if own is not None else self.self_healing.drift_detection.drift_threshold

    @property
    def retraining_cooldown_hours(self) -> float:
        own = self.monitoring.retraining_cooldown_hours
        fallback = self.self_healing.drift_detection.retraining_cooldown_hours
        return own if own is not None else fallback

    @property
    def auto_retrain_enabled(self) -> bool:
        own = self.monitoring.enable_auto_retrain
        return own if own is not None else self.self_healing.drift_detection.auto_retrain_enabled


_JSON_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    """Turn one pydantic error into (key path, message) in the config file's own terms."""
    path = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"])
    path = path.replace(".[", "[")
    kind = error["type"]
    if kind == "extra_forbidden":
        return path, "unknown key"
    got = _JSON_TYPES.get(type(error.get("input")), type(error.get("input")).__name__)
    message = str(error["msg"]).replace("Input should be", "expected")
    message = message.removeprefix("Value error, ")
    if kind.endswith("_type") or kind == "literal_error":
        message = f"{message}, got {got} {json.dumps(error.get('input'))}"
    return path, message


def _load_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, f"cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "is not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            path, f"expected a JSON object at the top level, got {type(data).__name__}"
        )
    return data


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], data: dict[str, Any], path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        key_path, message = _describe(dict(errors[0]))
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s) in this file)"
        raise ConfigError(path, message, key_path=key_path) from None


# Keys of the original design that mlmedic accepts only at their default value: any other value
# is refused with this reason (a key that is accepted and ignored would be a lie).
UNSUPPORTED: dict[str, str] = {
    "data_quality.validation_on_ingestion": "mlmedic always validates data when it reads it",
    "monitoring.real_time_monitoring_enabled": (
        "real-time (streaming) monitoring is not supported; run 'mlmedic monitor --every'"
    ),
    "ci_cd.continue_on_error": "mlmedic does not run CI; set this in your CI workflow",
    "ci_cd.fail_fast": "mlmedic does not run CI; set this in your CI workflow",
    "ci_cd.auto_fix_tests": "mlmedic does not run CI; set this in your CI workflow",
    "ci_cd.parallel_execution": "mlmedic does not run CI; set this in your CI workflow",
}
# Keys that describe rather than configure.
INFORMATIONAL = {"self_healing.description"}


def _refuse_unsupported(config: SelfHealingConfig, path: Path) -> None:
    default = SelfHealingConfig()
    recipes = config.model_training.retrain_recipes
    if len(set(recipes)) != len(recipes):
        raise ConfigError(path, "a recipe is listed twice", "model_training.retrain_recipes")
    for key, reason in UNSUPPORTED.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        wanted = getattr(getattr(default, section), name)
        if value != wanted:
            raise ConfigError(
                path,
                f"{json.dumps(value)} is not supported ({reason}); only {json.dumps(wanted)}"
                " is accepted",
                key,
            )


def load_settings(project_dir: str | Path) -> Settings:
    """Read both config files of a project directory; a file that is absent means its defaults."""
    root = Path(project_dir)
    healing_path, monitoring_path = root / SELF_HEALING_FILE, root / MONITORING_FILE
    healing = (
        _validate(SelfHealingConfig, _load_json(healing_path), healing_path)
        if healing_path.exists()
        else SelfHealingConfig()
    )
    _refuse_unsupported(healing, healing_path)
    monitoring = (
        _validate(MonitoringConfig, _load_json(monitoring_path), monitoring_path)
        if monitoring_path.exists()
        else MonitoringConfig()
    )
    return Settings(self_healing=healing, monitoring=monitoring)


def write_default_configs(project_dir: str | Path, *, force: bool = False) -> list[Path]:
    """Write both files with their defaults; refuse to overwrite existing ones unless ``force``."""
    root = Path(project_dir)
    targets = {
        root / SELF_HEALING_FILE: SelfHealingConfig().model_dump(mode="json"),
        root / MONITORING_FILE: MonitoringConfig().model_dump(mode="json", exclude_none=True),
    }
    existing = [path.name for path in targets if path.exists()]
    if existing and not force:
        raise ProjectError(
            f"{', '.join(existing)} already exist(s) in {root}; use --force to overwrite"
        )
    root.mkdir(parents=True, exist_ok=True)
    for path, content in targets.items():
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return list(targets)
