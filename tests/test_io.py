from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlmedic.data.io import read_table, write_table
from mlmedic.errors import DataFileError, ProjectError


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
    with pytest.raises(DataFileError, match="is a directory with no CSV or Parquet files"):
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
