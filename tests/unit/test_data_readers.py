"""Raw row readers: json, jsonl, parquet; bad lines come back with their location."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mindspeed_rl.data.readers import read_records
from mindspeed_rl.errors import UserError


def test_jsonl_with_bad_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": \n\xff\xfe\n[1, 2]\n{"a": 2}\n')
    records = list(read_records(path))
    assert [r.where for r in records] == [f"{path}:{n}" for n in (1, 3, 4, 5, 6)]
    assert records[0].row == {"a": 1} and records[-1].row == {"a": 2}
    assert records[1].error.startswith("invalid JSON")
    assert records[2].error.startswith("not valid UTF-8 (byte 0xff")
    assert records[3].error == "expected a JSON object, got list"


def test_json_array_and_json_lines_named_json(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"a": 1}, 2]))
    records = list(read_records(array))
    assert records[0].row == {"a": 1}
    assert records[1].where == f"{array}: item 2" and records[1].error
    lines = tmp_path / "l.json"
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    assert [r.row["a"] for r in read_records(lines)] == [1, 2]


def test_invalid_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n{"a": 1},\n{"a": }\n]')
    with pytest.raises(UserError, match=f"{path}:3:7: invalid JSON"):
        list(read_records(path))


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"problem": ["p1", "p2"], "answer": ["1", "2"]}), path)
    records = list(read_records(path))
    assert [r.row for r in records] == [
        {"problem": "p1", "answer": "1"},
        {"problem": "p2", "answer": "2"},
    ]
    assert records[1].where == f"{path}: row 2"


def test_unreadable_inputs(tmp_path):
    with pytest.raises(UserError, match="input file not found"):
        read_records(tmp_path / "none.jsonl")
    odd = tmp_path / "d.tsv"
    odd.write_text("a\tb\n")
    with pytest.raises(UserError, match="cannot tell the format"):
        read_records(odd)
    fake = tmp_path / "d.parquet"
    fake.write_text("not parquet")
    with pytest.raises(UserError, match="cannot read as parquet"):
        list(read_records(fake))


def test_csv_rows_with_a_header(tmp_path):
    path = tmp_path / "gpqa.csv"
    path.write_text('Question,Correct Answer\n"What, exactly?",Argon\nshort,"two\nlines"\nbad\n')
    records = list(read_records(path))
    assert [r.row for r in records[:2]] == [
        {"Question": "What, exactly?", "Correct Answer": "Argon"},
        {"Question": "short", "Correct Answer": "two\nlines"},
    ]
    assert records[2].row is None and "not as many fields" in records[2].error
    assert records[2].where == f"{path}: row 3"
