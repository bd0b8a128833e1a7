"""The one CSV and JSON writer (femurseg/atomic.py): layout, formatting, atomicity."""

import json
import math

import pytest

from femurseg.atomic import atomic_write_csv, atomic_write_json, csv_text


def test_csv_text_layout_missing_none_extra_and_float_format():
    rows = [{"id": "a", "dice": 0.123456789123, "note": None, "extra": 1}, {"id": "b,c", "dice": 2}]
    assert csv_text(rows, ["id", "dice", "note"]) == 'id,dice,note\na,0.123456789123,\n"b,c",2,\n'
    assert csv_text(rows, ["id", "dice"], float_format=".8g") == 'id,dice\na,0.12345679\n"b,c",2\n'


def test_atomic_write_csv_and_json_leave_no_temporaries(tmp_path):
    path = atomic_write_csv(tmp_path / "out" / "t.csv", [{"x": 1}], ["x"])
    assert path.read_text() == "x\n1\n"
    data = {"b": [1, 2], "a": None}
    written = atomic_write_json(tmp_path / "d.json", data, indent=1, sort_keys=True)
    assert written.read_text() == json.dumps(data, indent=1, sort_keys=True) + "\n"
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "nan.json", {"x": math.nan})
    assert not (tmp_path / "nan.json").exists()
    assert atomic_write_json(tmp_path / "nan.json", {"x": math.nan}, allow_nan=True).read_text() == '{\n  "x": NaN\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "nan.json", "out"]
