"""The command line: Typer's runner for most cases, a real subprocess for the entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlmedic.cli import app
from mlmedic.data.datasets import TARGET

runner = CliRunner()


def _run(*args: str | Path):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def test_init_writes_both_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = _run("init", "--project-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "self_healing_config.json").exists()
    assert (tmp_path / "monitoring_config.json").exists()
    again = _run("init", "--project-dir", tmp_path)
    assert again.exit_code == 2
    assert "--force" in again.output
    assert _run("init", "--project-dir", tmp_path, "--force").exit_code == 0


def test_check_data_fails_on_a_dirty_batch(files: dict[str, Path]) -> None:
    result = _run("check-data", files["batch"], "--reference", files["reference"], "-t", TARGET)
    assert result.exit_code == 1
    assert "FAIL" in result.output
    assert "mlmedic fix-data" in result.output


def test_check_data_passes_on_clean_data(files: dict[str, Path]) -> None:
    result = _run("check-data", files["reference"], "--reference", files["reference"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_check_data_without_reference_says_so(files: dict[str, Path]) -> None:
    result = _run("check-data", files["batch"])
    assert result.exit_code == 1
    assert "its own reference" in result.output


def test_fix_data_repairs_and_writes_events(files: dict[str, Path], tmp_path: Path) -> None:
    raw = files["batch"].read_bytes()
    out = tmp_path / "fixed.csv"
    result = _run(
        "fix-data",
        files["batch"],
        "-o",
        out,
        "-r",
        files["reference"],
        "-t",
        TARGET,
        "-C",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert files["batch"].read_bytes() == raw
    assert out.exists() and (tmp_path / "fixed.quarantine.csv").exists()
    assert json.loads((tmp_path / "fixed.audit.json").read_text())["checks_after"]["passed"]
    check = _run("check-data", out, "-r", files["reference"], "-t", TARGET, "-C", tmp_path)
    assert check.exit_code == 0, check.output
    logs = _run("logs", "--kind", "data_fix", "-C", tmp_path)
    assert logs.exit_code == 0 and "data_fix/auto-fix success" in logs.output
    export = _run("logs", "--export", tmp_path / "exported", "-C", tmp_path)
    assert export.exit_code == 0
    exported = json.loads((tmp_path / "exported" / "data_fix_log.json").read_text())
    assert len(exported) == 1 and exported[0]["outcome"] == "success"


def test_save_and_reuse_a_contract(files: dict[str, Path], tmp_path: Path) -> None:
    saved = tmp_path / "contract.json"
    first = _run(
        "check-data", files["reference"], "-r", files["reference"], "--save-contract", saved
    )
    assert first.exit_code == 0
    second = _run("check-data", files["batch"], "--contract", saved)
    assert second.exit_code == 1 and "FAIL" in second.output


def test_logs_filters_and_rejects_bad_options(tmp_path: Path) -> None:
    assert "no events" in _run("logs", "-C", tmp_path).output
    bad_kind = _run("logs", "--kind", "nap", "-C", tmp_path)
    assert bad_kind.exit_code == 2 and "unknown event kind 'nap'" in bad_kind.output
    bad_since = _run("logs", "--since", "last tuesday", "-C", tmp_path)
    assert bad_since.exit_code == 2 and "--since" in bad_since.output
    assert _run("logs", "--since", "24h", "-C", tmp_path).exit_code == 0


# ----------------------------------------------------------------------------- bad input
def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


BAD_FILES = {
    "missing": (None, "file not found"),
    "empty.csv": ("", "file is empty"),
    "header.csv": ("a,b,c\n", "no data rows (header only)"),
    "garbled.csv": ('a,b\n1,2\n3,4,5,6\n"x\n', "not a readable CSV file"),
    "fake.parquet": ("a,b\n1,2\n", "not a valid Parquet file"),
    "all_nan.csv": ("a,b\n" + "".join(f"{i},\n" for i in range(12)), "column 'b' has no values"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
@pytest.mark.parametrize("command", ["check-data", "fix-data"])
def test_bad_files_get_one_clear_line(tmp_path: Path, name: str, command: str) -> None:
    content, problem = BAD_FILES[name]
    path = tmp_path / ("missing.csv" if content is None else name)
    if content is not None:
        _write(path, content)
    before = path.read_bytes() if path.exists() else None
    args: list[str | Path] = [command, path]
    if command == "fix-data":
        args += ["-o", tmp_path / "out.csv"]
    result = _run(*args, "-C", tmp_path)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert problem in lines[0]
    assert "Traceback" not in result.output
    if before is not None:
        assert path.read_bytes() == before
    assert not (tmp_path / "out.csv").exists()


def test_reference_from_another_dataset(files: dict[str, Path], tmp_path: Path) -> None:
    other = _write(tmp_path / "iris.csv", "sepal_length,species\n" + "5.1,setosa\n4.9,setosa\n" * 6)
    result = _run("check-data", files["batch"], "--reference", other)
    assert result.exit_code == 2
    assert "no column in common" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"drift_detection": {"drift_treshold": 0.4}},
            "self_healing_config.json: drift_detection.drift_treshold: unknown key",
        ),
        (
            {"data_quality": {"outlier_threshold_iqr": "three"}},
            "self_healing_config.json: data_quality.outlier_threshold_iqr: expected",
        ),
    ],
)
def test_bad_config_is_reported_by_every_command(
    files: dict[str, Path], tmp_path: Path, config: dict, problem: str
) -> None:
    _write(tmp_path / "self_healing_config.json", json.dumps(config))
    for args in (["check-data", files["batch"]], ["logs"]):
        result = _run(*args, "-C", tmp_path)
        assert result.exit_code == 2, result.output
        assert problem in result.output
        assert "Traceback" not in result.output


def test_unsupported_output_suffix_fails_before_any_work(
    files: dict[str, Path], tmp_path: Path
) -> None:
    result = _run("fix-data", files["batch"], "-o", tmp_path / "out.xlsx", "-C", tmp_path)
    assert result.exit_code == 2
    assert "unsupported file type '.xlsx'" in result.output
    assert not (tmp_path / ".mlmedic").exists() or not list(tmp_path.glob("out*"))


# ----------------------------------------------------------------------------- real processes
def _subprocess(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "mlmedic", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_python_dash_m_runs_the_cli(files: dict[str, Path], tmp_path: Path) -> None:
    version = _subprocess("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("mlmedic ")
    fixed = _subprocess(
        "fix-data",
        files["batch"],
        "-o",
        "fixed.parquet",
        "-r",
        files["reference"],
        "-t",
        TARGET,
        cwd=tmp_path,
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(pd.read_parquet(tmp_path / "fixed.parquet")) > 0
    assert (tmp_path / ".mlmedic" / "events.db").exists()
    broken = _subprocess("check-data", "nope.csv", cwd=tmp_path)
    assert broken.returncode == 2
    assert broken.stderr.strip() == "error: nope.csv: file not found"
    assert broken.stdout == ""


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mlmedic")
    if not script.exists():
        pytest.skip("console script not on this interpreter's bin directory")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "check-data" in result.stdout and "fix-data" in result.stdout


def test_feedback_command_records_labels(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nabc,1\ndef,0\n")
    result = _run("feedback", labels, "-C", tmp_path)
    assert result.exit_code == 0 and "recorded 2 label(s)" in result.output
    from mlmedic.store.logstore import read_feedback

    stored = read_feedback(tmp_path / ".mlmedic" / "feedback")
    assert sorted(stored["request_id"]) == ["abc", "def"]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,label\nabc,1\n")
    bad = _run("feedback", wrong, "-C", tmp_path)
    assert bad.exit_code == 2 and "missing column(s) request_id" in bad.output


def test_serve_without_a_champion_is_a_clear_error(tmp_path: Path) -> None:
    result = _run("serve", "--port", "0", "-C", tmp_path)
    assert result.exit_code == 2
    assert "has no champion to serve yet: run 'mlmedic run" in result.output


# ----------------------------------------------------------------------------- misuse: exit 2
def test_project_dir_before_the_command_and_no_state_for_read_only_commands(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in (["models"], ["logs"]):
        before = _run("-C", empty, *command)
        assert before.exit_code == 0, before.output
        assert ("no versions" in before.output) or ("no events" in before.output)
    assert list(empty.iterdir()) == []  # nothing created by reading
    missing = tmp_path / "typo"
    result = _run("models", "-C", missing)
    assert result.exit_code == 2 and "no such project directory" in result.output
    assert not missing.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["monitor", "--every", "inf"], "--every"),
        (["monitor", "--every", "nan"], "--every"),
        (["monitor", "--every", "0"], "not a positive interval"),
        (["monitor", "--every", "-5m"], "negative"),
        (["logs", "-n", "-5"], "--limit"),
        (["serve", "--port", "-1"], "--port"),
        (["serve", "--workers", "65"], "--workers"),
    ],
)
def test_impossible_options_exit_2_with_one_line(
    tmp_path: Path,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlmedic.cli import main

    monkeypatch.setattr(sys, "argv", ["mlmedic", *args, "-C", str(tmp_path)])
    with pytest.raises(SystemExit) as done:
        main()
    error = capsys.readouterr().err
    assert done.value.code == 2, error
    assert message in error
    assert len(error.strip().splitlines()) == 1, error
    assert "Traceback" not in error
    assert not (tmp_path / ".mlmedic").exists()


def test_fix_data_into_a_path_under_a_file_is_exit_2_and_the_input_is_untouched(
    files: dict[str, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    before = files["batch"].read_bytes()
    result = _run(
        "fix-data", files["batch"], "-o", blocker / "out.parquet", "-r", files["reference"]
    )
    assert result.exit_code == 2, result.output
    assert "cannot write there" in result.output
    assert files["batch"].read_bytes() == before


def test_logs_export_honours_kind_and_refuses_a_file(tmp_path: Path) -> None:
    from mlmedic.store.events import EventStore

    with EventStore(tmp_path / ".mlmedic" / "events.db") as store:
        store.record("rollback", "rollback", message="r")
        store.record("recovery", "service", message="s")
        store.record("drift_check", "drift", message="d")
    target = tmp_path / "out"
    result = _run("logs", "--export", target, "--kind", "rollback", "-C", tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.iterdir()) == ["rollback_log.json"]
    everything = _run("logs", "--export", tmp_path / "all", "-C", tmp_path)
    assert everything.exit_code == 0
    assert (tmp_path / "all" / "monitoring_log.json").exists()
    assert "monitoring_log.json (1 events)" in everything.output  # one line per file
    file_target = tmp_path / "exists.txt"
    file_target.write_text("keep me")
    refused = _run("logs", "--export", file_target, "-C", tmp_path)
    assert refused.exit_code == 2 and "not a directory" in refused.output
    assert file_target.read_text() == "keep me"


def test_help_and_version_import_no_heavy_library() -> None:
    """`mlmedic --help` and `--version` start fast because they import neither pandas,
    scikit-learn nor MLflow (timed in bench/bench_startup.py, not here)."""
    probe = (
        "import sys\n"
        "from mlmedic.cli import app\n"
        "from typer.testing import CliRunner\n"
        "for args in (['--help'], ['--version'], ['models', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "names = ('pandas', 'sklearn', 'mlflow', 'pyarrow')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.slow
def test_every_reporting_command_speaks_json_for_scripts(
    tmp_path: Path,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--json`: one JSON document on stdout and nothing else (narration goes to stderr), the
    exit code unchanged, also for an empty project."""
    import json
    import sys

    from mlmedic.cli import main

    def cli(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["mlmedic", *args, "-C", str(tmp_path)])
        with pytest.raises(SystemExit) as done:
            main()
        said = capsys.readouterr()
        return int(done.value.code or 0), said.out, said.err

    code, out, _ = cli("models", "--json")
    assert code == 0 and json.loads(out)["versions"] == []
    code, out, _ = cli("logs", "--json")
    assert code == 0 and json.loads(out) == {"events": []}

    batch, reference = str(files["batch"]), str(files["reference"])
    code, out, _ = cli("check-data", batch, "-r", reference, "-t", TARGET, "--json")
    checked = json.loads(out)
    assert code == 1 and checked["passed"] is False and checked["data"] == batch
    assert checked["n_failed"] > 0 and {"check", "column", "count"} <= set(checked["results"][0])
    fixed_path = tmp_path / "fixed.csv"
    code, out, _ = cli(
        "fix-data", batch, "-r", reference, "-t", TARGET, "-o", str(fixed_path), "--json"
    )
    fixed = json.loads(out)
    assert code == 0 and fixed["passed"] and fixed["before"]["passed"] is False
    assert fixed["after"]["passed"] and fixed["repair"]["rows"]["input_rows"] == checked["n_rows"]
    assert fixed["written"]["data"] == str(fixed_path)

    code, out, err = cli("run", reference, "-t", TARGET, "--json")
    ran = json.loads(out)
    assert code == 0 and ran["deployed"] and ran["champion_after"] == 1, err
    assert ran["gate"]["passed"] and "gate" in err  # the narration, on stderr
    code, out, err = cli("monitor", "--batch", reference, "--json")
    passed = json.loads(out)
    assert code == 0 and passed["rows"] == 3000 and passed["drift"]["drift"] is False, err
    assert passed["decision"]["action"] == "none" and passed["performance"]["accuracy"] > 0.5
    code, out, err = cli("monitor", "--every", "6h", "--json")
    assert code == 2 and out == "" and "--json prints one pass" in err

    code, out, _ = cli("models", "--json")
    [version] = json.loads(out)["versions"]
    assert code == 0 and version["version"] == 1 and version["status"] == "champion"
    assert version["aliases"] == ["champion"] and 0 < version["metrics"]["accuracy"] <= 1
    code, out, _ = cli("logs", "--json", "--kind", "deploy")
    events = json.loads(out)["events"]
    assert code == 0 and events and {e["kind"] for e in events} == {"deploy"}
    code, out, err = cli("logs", "--json", "--export", str(tmp_path / "x"))
    assert code == 2 and out == "" and "choose one" in err


def test_long_work_shows_progress_on_a_terminal_and_nothing_extra_when_piped(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    import mlmedic.cli as cli

    args = ["check-data", str(files["batch"]), "-r", str(files["reference"]), "-t", TARGET]
    piped = runner.invoke(app, [*args, "-C", str(tmp_path)])
    assert piped.exit_code == 1 and "reading and checking" not in piped.output
    screen = io.StringIO()
    monkeypatch.setattr(cli.console, "out", Console(file=screen, force_terminal=True, width=400))
    shown = runner.invoke(app, [*args, "-C", str(tmp_path)])
    assert shown.exit_code == 1
    assert f"reading and checking {files['batch']}" in screen.getvalue()  # the live status line
    assert "(0 s)" in screen.getvalue()  # with the time since the step began


@pytest.mark.slow
def test_a_deleted_event_store_gets_its_history_back_from_mlflow_at_the_next_command(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """#21: events.db deleted under a project: the next command that opens the registry
    restores the champions from MLflow and says so on stderr and in one event."""
    first = _subprocess("run", files["reference"], "-t", TARGET, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (tmp_path / ".mlmedic" / "events.db").unlink()
    models = _subprocess("models", cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    assert "was recreated: restored from MLflow 1 alias moves" in models.stderr
    logs = _subprocess("logs", "--json", cwd=tmp_path)
    events = json.loads(logs.stdout)["events"]
    kinds = [(e["kind"], e["details"].get("restored")) for e in events]
    assert kinds == [("alias", True), ("component", None)], kinds
    again = _subprocess("models", cwd=tmp_path)  # once: the store knows v1 now
    assert "recreated" not in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--target", "contract_type", "--task", "regression"], "these are class labels"),
        (["--target", "broken_charges"], "values are not numbers (e.g. 'unknown')"),
        (["--target", "constant"], "is constant (3 in every row)"),
    ],
)
def test_a_target_nothing_can_be_learned_from_is_refused_at_once_with_one_line(
    tmp_path: Path, args: list[str], says: str
) -> None:
    """#23's bad input through the real CLI: ``--task regression`` on text labels, a numeric
    target with text in it, a target of one value — before any stage, exit 2, one line naming
    the problem, nothing registered."""
    from mlmedic.data.datasets import make_churn

    frame = make_churn(600, seed=4)
    frame["broken_charges"] = frame["monthly_charges"].astype(object)
    frame.loc[frame.index[:12], "broken_charges"] = "unknown"
    frame["constant"] = 3
    data = tmp_path / "churn.csv"
    frame.to_csv(data, index=False)
    done = _subprocess("run", data, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert says in lines[0] and args[1] in lines[0], lines[0]
    models = tmp_path / ".mlmedic" / "mlartifacts" / "models"
    assert not models.exists() or not any(models.iterdir())
    assert not (tmp_path / ".mlmedic" / "champion.json").exists()


@pytest.mark.parametrize(
    ("trainer", "says"),
    [
        ("lightgbm", "trainer 'lightgbm' needs the lightgbm package: pip install"),
        ("xgboost", "trainer 'xgboost' needs the xgboost package: pip install"),
        ("no_such_package_here:train", "cannot import module"),
    ],
)
def test_a_trainer_that_cannot_be_used_is_refused_before_any_work(
    tmp_path: Path,
    trainer: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#23's bad input: a built-in trainer whose library is not installed (made unimportable
    here), or a trainer that cannot be imported — one line, exit 2, before the data stage,
    nothing registered."""
    from mlmedic.cli import main
    from mlmedic.data.datasets import make_churn

    monkeypatch.setitem(sys.modules, trainer, None)  # import lightgbm -> ImportError

    data = tmp_path / "churn.csv"
    make_churn(300, seed=4).to_csv(data, index=False)
    args = ["mlmedic", "run", str(data), "-t", TARGET, "--trainer", trainer, "-C", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    assert done.value.code == 2, captured.err
    assert len(captured.err.strip().splitlines()) == 1 and says in captured.err, captured.err
    assert ":" in trainer or f'"mlmedic[{trainer}]"' in captured.err
    assert "[1] data" not in captured.out + captured.err
    assert not (tmp_path / ".mlmedic" / "champion.json").exists()
