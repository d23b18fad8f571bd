"""Unit tests of params validation: unknown, missing and mistyped keys are clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from pipeline.common.config import from_mapping, section
from pipeline.common.errors import BadRecords, ConfigError, InputError


@dataclass(frozen=True)
class Inner:
    size: int


@dataclass(frozen=True)
class Cfg:
    model: str
    share: float
    labels: tuple[str, ...]
    mode: Literal["a", "b"]
    inner: Inner
    optional: int = 3


GOOD = {"model": "m", "share": 1, "labels": ["X", "Y"], "mode": "a", "inner": {"size": 2}}


def test_valid_mapping_builds_frozen_dataclass() -> None:
    cfg = from_mapping(Cfg, GOOD, "params.yaml:test")
    assert cfg == Cfg("m", 1.0, ("X", "Y"), "a", Inner(2), 3)
    with pytest.raises(AttributeError):
        cfg.model = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "params.yaml:test: unknown key(s) extra"),
        ({"model": None}, "params.yaml:test.model: expected str"),
        ({"mode": "c"}, "params.yaml:test.mode: 'c' is not one of"),
        ({"labels": "X"}, "params.yaml:test.labels: expected a list"),
        ({"inner": {"size": "2"}}, "params.yaml:test.inner.size: expected int"),
        ({"share": True}, "params.yaml:test.share: expected float, got bool"),
    ],
)
def test_bad_values_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        from_mapping(Cfg, {**GOOD, **change}, "params.yaml:test")


def test_missing_key_is_named() -> None:
    data = dict(GOOD)
    del data["model"]
    with pytest.raises(ConfigError, match="missing key 'model'"):
        from_mapping(Cfg, data, "params.yaml:test")


def test_section_reports_missing_file_and_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        section(Cfg, "test", tmp_path / "nope.yaml")
    params = tmp_path / "params.yaml"
    params.write_text("other: {}\n")
    with pytest.raises(ConfigError, match="missing section 'test'"):
        section(Cfg, "test", params)
    params.write_text("test: [1\n")
    with pytest.raises(ConfigError, match=r"params.yaml:\d+: invalid YAML"):
        section(Cfg, "test", params)


@dataclass(frozen=True)
class Colors:
    colors: dict[str, str]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test:\n  model: m\n  no: 1\n", "params.yaml:test: key False (bool) is not a string: quote it"),
        ("test:\n  model: m\n  2: x\n  zeta: 3\n", "params.yaml:test: key 2 (int) is not a string: quote it"),
        ("on: {}\ntest: {}\n", "params.yaml: key True (bool) is not a string: quote it"),
    ],
)
def test_non_string_yaml_keys_are_named_not_a_traceback(tmp_path: Path, text: str, message: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        section(Cfg, "test", params)
    assert str(info.value) == f"{tmp_path}/{message} (YAML reads unquoted yes/no/on/off as booleans and digits as numbers)"


def test_non_string_key_of_a_mapping_value_is_named() -> None:
    assert from_mapping(Colors, {"colors": {"NO": "#fff"}}, "p:x").colors == {"NO": "#fff"}
    with pytest.raises(ConfigError, match=r"^p:x\.colors: key False \(bool\) is not a string: quote it"):
        from_mapping(Colors, {"colors": {"PERSON": "#000", False: "#fff"}}, "p:x")


def test_bad_records_threshold() -> None:
    bad = BadRecords("stage", max_share=0.25, quiet=True)
    bad.add("f.jsonl:3", "invalid JSON")
    bad.check(total=4)  # 25% is allowed
    bad.add("f.jsonl:4", "missing text")
    with pytest.raises(InputError, match=r"2 of 4 records are bad.*first: f.jsonl:3: invalid JSON"):
        bad.check(total=4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("share: .nan", r"test\.share: expected a finite number of at most 1e\+15, got nan"),
        ("share: .inf", r"test\.share: expected a finite number of at most 1e\+15, got inf"),
        ("share: -.inf", r"test\.share: expected a finite number of at most 1e\+15, got -inf"),
        ("share: 1.0e+30", r"test\.share: expected a finite number of at most 1e\+15, got 1e\+30"),
        ("optional: 1000000000000000000000000000000", r"test\.optional: expected an integer of at most 9007199254740992"),
        ("optional: 1e30", r"test\.optional: expected int, got str '1e30'"),
    ],
)
def test_numbers_out_of_range_are_config_errors(tmp_path: Path, line: str, message: str) -> None:
    """NaN, infinities and magnitudes no count or share can have stop at start, naming the key."""
    fields = {"model": "m", "share": "0.5", "labels": "[a]", "mode": "a", "inner": "{size: 1}"}
    key, _, value = line.partition(": ")
    fields[key] = value
    params = tmp_path / "params.yaml"
    params.write_text("test:\n" + "".join(f"  {k}: {v}\n" for k, v in fields.items()), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        section(Cfg, "test", params)


def test_a_key_given_twice_is_an_error_naming_its_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("test:\n  model: m\n  model: n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/params.yaml:3: invalid YAML: duplicate key 'model'$"):
        section(Cfg, "test", params)
