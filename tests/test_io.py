from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlmedic.core.errors import DataFileError, ProjectError
from mlmedic.data.io import read_table, write_table


def test_csv_and_parquet_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    for name in ("t.csv", "t.parquet"):
        write_table(frame, tmp_path / name)
        back = read_table(tmp_path / name)
        pd.testing.assert_frame_equal(back, frame)


def test_parquet_accepts_mixed_object_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": ["1", 2.5, None]})
    write_table(frame, tmp_path / "mixed.parquet")
    values = read_table(tmp_path / "mixed.parquet")["a"].tolist()
    assert [None if pd.isna(v) else v for v in values] == ["1", "2.5", None]  # pandas 2 and 3


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.csv", None, "file not found"),
        ("empty.csv", b"", "file is empty"),
        ("header.csv", b"a,b,c\n", "no data rows (header only)"),
        ("garbled.csv", b'a,b\n1,2\n3,4,5,6,7\n"unterminated\n', "not a readable CSV file"),
        ("binary.csv", bytes(range(256)) * 4, "binary, not a text CSV"),
        ("latin.csv", "name\nJos\xe9\n".encode("latin-1"), "not UTF-8"),
        ("fake.parquet", b"a,b\n1,2\n", "not a valid Parquet file"),
        ("data.xlsx", b"PK", "unsupported file type '.xlsx'"),
    ],
)
def test_bad_files_give_one_clear_line(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError) as info:
        read_table(path)
    message = str(info.value)
    assert problem in message
    assert name in message
    assert "\n" not in message
    if content is not None:
        assert path.read_bytes() == content  # input untouched


def test_a_directory_without_data_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataFileError, match="is a directory with no file mlmedic can read in it"):
        read_table(tmp_path / "d.csv")


def test_a_directory_of_files_is_one_table(tmp_path: Path) -> None:
    folder = tmp_path / "production"
    folder.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_parquet(folder / "part-1.parquet")
    pd.DataFrame({"a": [3]}).to_csv(folder / "part-2.csv", index=False)
    assert read_table(folder)["a"].tolist() == [1, 2, 3]
    pd.DataFrame({"b": [4]}).to_csv(folder / "part-3.csv", index=False)
    with pytest.raises(DataFileError, match="other columns"):
        read_table(folder)


def test_write_refuses_to_overwrite_a_protected_input(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("a\n1\n")
    with pytest.raises(ProjectError, match="refusing to overwrite the input"):
        write_table(pd.DataFrame({"a": [2]}), source, protect=(source,))
    assert source.read_text() == "a\n1\n"


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("cannot render")

    frame = pd.DataFrame({"a": [Boom()]})
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        write_table(frame, target / "out.csv")
    assert list(target.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"a,b,c\n1,2,3\n4,5", "the last row is cut short (2 of 3 fields"),
        (b"a,b,a\n1,2,3\n", "duplicate column name(s): a"),
    ],
)
def test_what_pandas_would_paper_over_is_an_error(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(DataFileError) as info:
        read_table(path)
    assert problem in str(info.value)
    assert path.read_bytes() == content


def test_a_last_line_without_a_newline_is_still_a_whole_row(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b,c\n1,2,3\n4,5,6")
    assert read_table(path)["c"].tolist() == [3, 6]


def _people() -> pd.DataFrame:
    return pd.DataFrame({"age": [31, 45, 27], "city": ["Oslo", "Lima", "Pune"], "y": [0, 1, 0]})


@pytest.mark.parametrize(
    "name",
    ["t.csv.gz", "t.csv.zst", "t.csv.bz2", "t.tsv.xz", "t.jsonl", "t.ndjson.gz", "t.feather"],
)
def test_compressed_csv_json_lines_and_feather_are_read(tmp_path: Path, name: str) -> None:
    frame = _people()
    path = tmp_path / name
    if ".feather" in name:
        frame.to_feather(path)
    elif ".jsonl" in name or ".ndjson" in name:
        frame.to_json(path, orient="records", lines=True, compression="infer")
    else:
        frame.to_csv(path, index=False, sep="\t" if ".tsv" in name else ",", compression="infer")
    pd.testing.assert_frame_equal(read_table(path), frame)


def test_fsspec_urls_files_and_folders_are_read(tmp_path: Path) -> None:
    """memory:// (any fsspec filesystem) and file://, one file or a folder as one table."""
    import fsspec

    frame = _people()
    root = f"memory://io-{tmp_path.name}"
    fs = fsspec.filesystem("memory")
    with fs.open(f"{root}/one.parquet", "wb") as handle:
        frame.to_parquet(handle, index=False)
    with fs.open(f"{root}/day=2/two.csv.gz", "wb") as handle:
        handle.write(__import__("gzip").compress(frame.to_csv(index=False).encode()))
    pd.testing.assert_frame_equal(read_table(f"{root}/one.parquet"), frame)
    pd.testing.assert_frame_equal(read_table(f"{root}/day=2/two.csv.gz"), frame)
    assert len(read_table(root)) == 6  # the folder, recursively, as one table
    frame.to_parquet(tmp_path / "local.parquet", index=False)
    pd.testing.assert_frame_equal(read_table(f"file://{tmp_path}/local.parquet"), frame)
    with pytest.raises(DataFileError, match=rf"^{root}/absent.csv: file not found$"):
        read_table(f"{root}/absent.csv")


def test_a_url_whose_filesystem_is_not_installed_is_one_line_keeping_the_url() -> None:
    """Before: `s3://b/x.parquet` became "s3:/b/x.parquet: file not found"."""
    with pytest.raises(DataFileError) as error:
        read_table("nosuchfs://bucket/x.parquet")
    assert str(error.value).startswith("nosuchfs://bucket/x.parquet: ")


def test_a_folder_of_partitioned_parquet_is_one_dataset(tmp_path: Path) -> None:
    frame = _people()
    for day in (1, 2):
        folder = tmp_path / "log" / f"day={day}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet", index=False)
    read = read_table(tmp_path / "log")
    assert len(read) == 6 and sorted(read["day"].astype(int).unique()) == [1, 2]


def test_an_unsupported_type_names_what_can_be_read(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    with pytest.raises(DataFileError, match=r"unsupported file type '.xlsx'; read: .csv"):
        read_table(tmp_path / "t.xlsx")


def test_check_data_and_run_read_a_memory_url_and_a_compressed_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    import fsspec

    from mlmedic.cli import main
    from mlmedic.data.datasets import TARGET, make_churn

    data = make_churn(600, seed=5)
    url = f"memory://cli-{tmp_path.name}/batch.parquet"
    with fsspec.filesystem("memory").open(url, "wb") as handle:
        data.to_parquet(handle, index=False)
    data.to_csv(tmp_path / "train.csv.gz", index=False)
    project = tmp_path / "proj"
    project.mkdir()

    def cli(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["mlmedic", *args, "-C", str(project)])
        with pytest.raises(SystemExit) as done:
            main()
        said = capsys.readouterr()
        return int(done.value.code or 0), said.out + said.err

    code, out = cli("check-data", url, "-t", TARGET)
    assert code in (0, 1) and url in out, out
    code, out = cli("run", str(tmp_path / "train.csv.gz"), "-t", TARGET)
    assert code == 0 and "is now champion" in out, out
    code, out = cli("check-data", "s3nope://bucket/x.parquet")
    assert code == 2 and "s3nope://bucket/x.parquet:" in out and "Traceback" not in out


def test_only_the_columns_needed_are_read(tmp_path: Path) -> None:
    """Parquet files and folders read only the asked-for columns, CSV parses only them; absent
    names are left out; none at all is one clear line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _people()
    wanted = {"age", "city", "not-in-the-file"}
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "blob", pa.array([b"x" * 10] * len(frame), pa.binary())
    )
    pq.write_table(table, tmp_path / "wide.parquet")
    read = read_table(tmp_path / "wide.parquet", columns=wanted)
    assert list(read.columns) == [c for c in frame.columns if c in wanted]
    assert read["age"].tolist() == frame["age"].tolist()
    frame.assign(notes="free text, never parsed").to_csv(tmp_path / "wide.csv", index=False)
    assert set(read_table(tmp_path / "wide.csv", columns=wanted).columns) == {"age", "city"}
    for day in (1, 2):
        folder = tmp_path / "log" / f"day={day}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet", index=False)
    assert set(read_table(tmp_path / "log", columns={"age", "day"}).columns) == {"age", "day"}
    with pytest.raises(DataFileError, match="has none of the columns needed"):
        read_table(tmp_path / "wide.parquet", columns={"x", "z"})
