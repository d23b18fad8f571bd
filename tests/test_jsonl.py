"""Tests of the JSON Lines reader and the JSON file helpers every stage shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import read_json, read_jsonl, write_json


def lines(n: int) -> list[bytes]:
    """`n` JSON Lines records {"n": 1} ... {"n": n}, with non-ASCII text so decoding matters."""
    return [json.dumps({"n": i, "text": "Kyiv – Київ"}, ensure_ascii=False).encode() + b"\n" for i in range(1, n + 1)]


def test_a_bad_byte_costs_exactly_its_own_line(tmp_path: Path) -> None:
    data = lines(3000)
    data[1500] = data[1500].replace(b"\xd0\x9a", b"\xd0\x20")  # line 1501: a broken two-byte sequence
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(data))
    bad = BadRecords("test", 0.0, quiet=True)
    got = [(lineno, rec["n"]) for lineno, rec in read_jsonl(path, bad)]
    assert len(got) == 2999
    assert got[1499:1501] == [(1500, 1500), (1502, 1502)] and got[-1] == (3000, 3000)
    assert [p["where"] for p in bad.problems] == [f"{path}:1501"]
    assert bad.problems[0]["error"].startswith("not valid UTF-8 (invalid continuation byte at byte ")
    assert bad.seen == 3000


def test_deeply_nested_json_is_a_bad_line_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "nested.jsonl"
    path.write_bytes(b"".join(lines(2)) + b"[" * 100_000 + b"\n" + b"".join(lines(3)[2:]))
    bad = BadRecords("test", 1.0, quiet=True)
    assert [(lineno, rec["n"]) for lineno, rec in read_jsonl(path, bad)] == [(1, 1), (2, 2), (4, 3)]
    assert bad.problems == [{"where": f"{path}:3", "error": "invalid JSON: nested too deeply"}]
    assert bad.seen == 4


def test_blank_lines_are_skipped_and_not_counted_and_line_numbers_are_the_file_s(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_bytes(b"\n" + lines(1)[0] + b"   \r\n" + b'{"n": 2}\r\n' + b"[1, 2]\n" + b"{oops\n")
    bad = BadRecords("test", 1.0, quiet=True)
    assert [(lineno, rec["n"]) for lineno, rec in read_jsonl(path, bad)] == [(2, 1), (4, 2)]
    assert bad.problems == [
        {"where": f"{path}:5", "error": "expected a JSON object, got list"},
        {"where": f"{path}:6", "error": "invalid JSON: Expecting property name enclosed in double quotes at column 2"},
    ]
    assert bad.seen == 4


def test_without_bad_records_a_bad_line_raises_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(lines(1)[0] + b"\xff\n")
    with pytest.raises(InputError, match=rf"^{path}:2: not valid UTF-8 \(invalid start byte at byte 1\)$"):
        list(read_jsonl(path))
    with pytest.raises(InputError, match=rf"^{tmp_path / 'none.jsonl'}: file not found$"):
        list(read_jsonl(tmp_path / "none.jsonl"))
    with pytest.raises(InputError, match=rf"^{tmp_path}: cannot read"):
        list(read_jsonl(tmp_path))


def test_the_bad_share_counts_unparseable_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"{oops\n" + b"".join(lines(3)))
    bad = BadRecords("test", 0.25, quiet=True)
    assert len(list(read_jsonl(path, bad))) == 3
    bad.check()  # 1 of 4 lines, not 1 of 3 parsed records
    bad.max_share = 0.2
    with pytest.raises(InputError, match="1 of 4 records are bad"):
        bad.check()


def test_write_json_then_read_json_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "doc.json"
    write_json(path, {"b": "Київ", "a": [1, None]})
    assert path.read_text(encoding="utf-8") == '{\n  "b": "Київ",\n  "a": [\n    1,\n    null\n  ]\n}\n'
    write_json(path, {"b": "Київ", "a": 1}, sort_keys=True, ensure_ascii=True)
    assert path.read_text(encoding="utf-8") == '{\n  "a": 1,\n  "b": "\\u041a\\u0438\\u0457\\u0432"\n}\n'
    assert read_json(path) == {"a": 1, "b": "Київ"}
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1,\n  "b": }', r"doc\.json:2: invalid JSON: Expecting value at column 8$"),
        (b'{"a": "\xff"}', r"doc\.json: not valid UTF-8 \(invalid start byte at byte 8\)$"),
        (b"[" * 100_000, r"doc\.json: invalid JSON: nested too deeply$"),
    ],
)
def test_read_json_errors_are_one_line_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_json(path)
    with pytest.raises(InputError, match=r"gone\.json: release manifest not found$"):
        read_json(tmp_path / "gone.json", "release manifest")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"text": "a", "n": ' + b"9" * 5000 + b"}", "invalid JSON: Exceeds the limit (4300 digits) for integer string"),
        (b'{"lead_time": NaN}', "invalid JSON: NaN is not a JSON number"),
        (b'{"lead_time": Infinity}', "invalid JSON: Infinity is not a JSON number"),
        (b'{"lead_time": -Infinity}', "invalid JSON: -Infinity is not a JSON number"),
    ],
)
def test_values_python_accepts_but_json_does_not_are_bad_lines(tmp_path: Path, line: bytes, error: str) -> None:
    """A huge integer (Python's int-string limit) or a NaN/Infinity is one bad line, never a traceback or a NaN."""
    path = tmp_path / "odd.jsonl"
    path.write_bytes(lines(1)[0] + line + b"\n" + lines(2)[1])
    bad = BadRecords("test", 1.0, quiet=True)
    assert [lineno for lineno, _ in read_jsonl(path, bad)] == [1, 3]
    assert [p["where"] for p in bad.problems] == [f"{path}:2"]
    assert bad.problems[0]["error"].startswith(error) and "\n" not in bad.problems[0]["error"]
    with pytest.raises(InputError, match=rf"^{path}:2: invalid JSON"):
        list(read_jsonl(path))


@pytest.mark.parametrize(("value", "ok"), [(1, True), (0.5, True), pytest.param(10**5000, True, id="huge-int"),
                                           (True, False), (None, False), (float("nan"), False),
                                           (float("inf"), False), ("1", False)])
def test_is_number_rejects_bools_and_non_finite_floats(value: object, ok: bool) -> None:
    from pipeline.common.contract import is_number

    assert is_number(value) is ok
