from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlmedic.core.config import (
    MONITORING_FILE,
    SELF_HEALING_FILE,
    Settings,
    load_settings,
    write_default_configs,
)
from mlmedic.core.errors import ConfigError, ProjectError

# The configuration of the design mlmedic comes from, key for key: it must load unchanged.
SEED_SELF_HEALING = {
    "self_healing": {"enabled": True, "description": "Comprehensive self-healing configuration"},
    "data_quality": {
        "auto_fix_enabled": True,
        "fix_missing_values": True,
        "fix_outliers": True,
        "fix_duplicates": True,
        "outlier_threshold_iqr": 3.0,
        "validation_on_ingestion": True,
    },
    "model_training": {
        "auto_backup_enabled": True,
        "backup_retention_days": 30,
        "max_backups": 10,
        "auto_retry_on_failure": True,
        "max_training_retries": 3,
    },
    "model_validation": {
        "auto_rollback_enabled": True,
        "min_accuracy_threshold": 0.70,
        "min_f1_threshold": 0.65,
        "rollback_on_degradation": True,
        "performance_degradation_threshold": 0.05,
    },
    "drift_detection": {
        "auto_retrain_enabled": True,
        "drift_threshold": 0.5,
        "retraining_cooldown_hours": 24,
        "min_samples_for_detection": 100,
        "alert_on_drift": True,
        "monitor_features": True,
        "monitor_predictions": True,
    },
    "service_recovery": {
        "auto_recovery_enabled": True,
        "health_check_interval_seconds": 60,
        "max_recovery_attempts": 3,
        "recovery_delay_seconds": 5,
        "recovery_methods": ["restart", "clear_cache", "rollback"],
        "alert_on_failure": True,
    },
    "monitoring": {
        "reference_data_path": "data/reference/reference_data.csv",
        "production_data_path": "data/production/",
        "reports_dir": "monitoring/reports",
        "metrics_dir": "monitoring/metrics",
        "alerts_dir": "monitoring/alerts",
        "batch_monitoring_enabled": True,
        "real_time_monitoring_enabled": False,
    },
    "logging": {
        "recovery_log_path": "monitoring/recovery_log.json",
        "rollback_log_path": "models/rollback_log.json",
        "retraining_log_path": ".github/triggers/retraining_log.json",
        "retention_days": 90,
    },
    "notifications": {
        "enabled": False,
        "email_alerts": False,
        "slack_webhook": None,
        "alert_on_drift": True,
        "alert_on_rollback": True,
        "alert_on_recovery": True,
    },
    "ci_cd": {
        "continue_on_error": False,
        "fail_fast": False,
        "auto_fix_tests": True,
        "parallel_execution": True,
    },
}
SEED_MONITORING = {
    "retraining_cooldown_hours": 0,
    "enable_auto_retrain": True,
    "drift_threshold": 0.5,
}


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_defaults_match_the_design() -> None:
    settings = Settings()
    healing = settings.self_healing
    assert healing.model_validation.min_accuracy_threshold == 0.70
    assert healing.data_quality.outlier_threshold_iqr == 3.0
    assert healing.drift_detection.retraining_cooldown_hours == 24
    assert healing.service_recovery.max_recovery_attempts == 3
    assert settings.monitoring.monitoring_interval_hours == 6
    assert settings.drift_threshold == 0.5
    assert settings.retraining_cooldown_hours == 24


def test_missing_files_mean_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path) == Settings()


def test_seed_configuration_loads_unchanged(tmp_path: Path) -> None:
    _write(tmp_path / SELF_HEALING_FILE, SEED_SELF_HEALING)
    _write(tmp_path / MONITORING_FILE, SEED_MONITORING)
    settings = load_settings(tmp_path)
    assert settings.self_healing.logging.rollback_log_path == "models/rollback_log.json"
    assert settings.self_healing.ci_cd.parallel_execution is True
    # monitoring_config.json is the more specific file: its repeated keys win.
    assert settings.self_healing.drift_detection.retraining_cooldown_hours == 24
    assert settings.retraining_cooldown_hours == 0
    assert settings.auto_retrain_enabled is True


def test_monitoring_file_without_overrides_falls_back(tmp_path: Path) -> None:
    _write(tmp_path / SELF_HEALING_FILE, {"drift_detection": {"drift_threshold": 0.3}})
    _write(tmp_path / MONITORING_FILE, {"monitoring_interval_hours": 1})
    settings = load_settings(tmp_path)
    assert settings.drift_threshold == 0.3
    assert settings.monitoring.monitoring_interval_hours == 1


def test_unknown_key_names_file_and_key_path(tmp_path: Path) -> None:
    _write(tmp_path / SELF_HEALING_FILE, {"drift_detection": {"drift_treshold": 0.4}})
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert (
        str(info.value) == "self_healing_config.json: drift_detection.drift_treshold: unknown key"
    )


def test_wrong_type_names_file_key_and_value(tmp_path: Path) -> None:
    _write(tmp_path / SELF_HEALING_FILE, {"model_validation": {"min_accuracy_threshold": "0.7"}})
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert message.startswith(
        "self_healing_config.json: model_validation.min_accuracy_threshold: expected"
    )
    assert 'got string "0.7"' in message


def test_out_of_range_and_bad_list_items_are_errors(tmp_path: Path) -> None:
    _write(tmp_path / SELF_HEALING_FILE, {"drift_detection": {"drift_threshold": 1.5}})
    with pytest.raises(
        ConfigError, match=r"drift_detection\.drift_threshold: .*less than or equal"
    ):
        load_settings(tmp_path)
    _write(tmp_path / SELF_HEALING_FILE, {"service_recovery": {"recovery_methods": ["reboot"]}})
    with pytest.raises(ConfigError, match=r"service_recovery\.recovery_methods\[0\]"):
        load_settings(tmp_path)


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    _write(tmp_path / MONITORING_FILE, {"monitoring_interval_hours": True})
    with pytest.raises(ConfigError, match=r"monitoring_config\.json: monitoring_interval_hours"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")],
)
def test_unreadable_config_is_one_clear_error(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / SELF_HEALING_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_settings(tmp_path)


def test_write_defaults_round_trips_and_refuses_overwrite(tmp_path: Path) -> None:
    written = write_default_configs(tmp_path)
    assert {p.name for p in written} == {SELF_HEALING_FILE, MONITORING_FILE}
    assert load_settings(tmp_path) == Settings()
    with pytest.raises(ProjectError, match="--force"):
        write_default_configs(tmp_path)
    _write(tmp_path / MONITORING_FILE, {"monitoring_interval_hours": 2})
    write_default_configs(tmp_path, force=True)
    assert load_settings(tmp_path).monitoring.monitoring_interval_hours == 6
