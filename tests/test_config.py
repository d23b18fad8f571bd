"""Unit tests of params validation: unknown, missing and mistyped keys are clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from pipeline.common.config import Count, Names, Section, Share, from_mapping, load_params, section, validated
from pipeline.common.errors import BadRecords, ConfigError, InputError


class Inner(Section):
    size: Count


class Cfg(Section):
    model: str
    share: Share
    labels: Names
    mode: Literal["a", "b"]
    inner: Inner
    optional: Annotated[int, Field(ge=0, le=10)] = 3


GOOD = {"model": "m", "share": 1, "labels": ["X", "Y"], "mode": "a", "inner": {"size": 2}}


def test_valid_mapping_builds_frozen_model() -> None:
    cfg = validated(Cfg, GOOD, "params.yaml:test")
    assert cfg == Cfg(model="m", share=1.0, labels=("X", "Y"), mode="a", inner=Inner(size=2), optional=3)
    assert isinstance(cfg.share, float) and isinstance(cfg.labels, tuple)
    with pytest.raises(ValueError, match="frozen"):
        cfg.model = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "params.yaml:test: unknown key(s) extra; expected model, share, labels, mode, inner, optional"),
        ({"model": None}, "params.yaml:test.model: expected str, got NoneType None"),
        ({"mode": "c"}, "params.yaml:test.mode: 'c' is not one of 'a' or 'b'"),
        ({"labels": "X"}, "params.yaml:test.labels: expected a list, got str 'X'"),
        ({"labels": ["X", 2]}, "params.yaml:test.labels[1]: expected str, got int 2"),
        ({"inner": {"size": "2"}}, "params.yaml:test.inner.size: expected int, got str '2'"),
        ({"inner": {"size": 0}}, "params.yaml:test.inner.size: must be in [1, 9007199254740992], got 0"),
        ({"inner": 2}, "params.yaml:test.inner: expected a mapping, got int"),
        ({"share": True}, "params.yaml:test.share: expected float, got bool True"),
        ({"share": 1.5}, "params.yaml:test.share: must be in [0, 1], got 1.5"),
        ({"optional": 11}, "params.yaml:test.optional: must be in [0, 10], got 11"),
    ],
)
def test_bad_values_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validated(Cfg, {**GOOD, **change}, "params.yaml:test")
    assert str(caught.value) == message and caught.value.exit_code == 2


def test_unknown_keys_are_named_before_any_other_problem() -> None:
    with pytest.raises(ConfigError, match=r"^p:x: unknown key\(s\) a, b; expected "):
        validated(Cfg, {**GOOD, "model": None, "b": 1, "a": 2}, "p:x")
    with pytest.raises(ConfigError, match=r"^p:x\.inner: unknown key\(s\) big; expected size$"):
        validated(Cfg, {**GOOD, "inner": {"size": 1, "big": 2}}, "p:x")


def test_missing_key_is_named() -> None:
    data = dict(GOOD)
    del data["model"]
    with pytest.raises(ConfigError, match=r"^params\.yaml:test: missing key 'model'$"):
        validated(Cfg, data, "params.yaml:test")


def test_a_borrowed_key_is_named_in_the_section_that_owns_it() -> None:
    with pytest.raises(ConfigError, match=r"^p:other\.labels: expected a list"):
        validated(Cfg, {**GOOD, "labels": 1}, "p:x", {"labels": "p:other"})


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


class Colors(Section):
    colors: dict[str, str]


@dataclass(frozen=True)
class RuleColors:
    """A rule file's layout: rule files are dataclasses built by from_mapping."""

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


@pytest.mark.parametrize("build", [validated, lambda cls, data, where: from_mapping(RuleColors, data, where)])
def test_non_string_key_of_a_mapping_value_is_named(build) -> None:
    assert build(Colors, {"colors": {"NO": "#fff"}}, "p:x").colors == {"NO": "#fff"}
    with pytest.raises(ConfigError, match=r"^p:x\.colors: key False \(bool\) is not a string: quote it"):
        build(Colors, {"colors": {"PERSON": "#000", False: "#fff"}}, "p:x")


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
        ("share: 1.0e+30", r"test\.share: must be in \[0, 1\], got 1e\+30"),
        ("optional: 1000000000000000000000000000000", r"test\.optional: must be in \[0, 10\], got 1e\+30"),
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


def _laughs(levels: int = 9) -> str:
    """The "billion laughs": each level a list of nine aliases of the level below (9**levels strings in all)."""
    lines = ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test:\n  labels: " + "[" * 5000 + "]" * 5000 + "\n", ":2: invalid YAML: nested deeper than 100 levels"),
        ("test:\n" + "  - " * 5000 + "x\n", ":2: invalid YAML: nested deeper than 100 levels"),
        ("test: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", ":1: invalid YAML: nested deeper than 100 levels"),
        (_laughs(), ":5: invalid YAML: aliases stand for more than 10000 nodes"),
        ("a: &x 1\nb: [" + ", ".join(["*x"] * 1001) + "]\n", ":2: invalid YAML: more than 1000 aliases in one document"),
        ("a: &x [1, *x]\n", ":1: invalid YAML: alias *x refers to a node that contains it"),
    ],
    ids=["flow-lists", "block-lists", "flow-maps", "billion-laughs", "many-aliases", "recursive-alias"],
)
def test_a_yaml_bomb_is_one_line_config_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    import time
    import tracemalloc

    params = tmp_path / "params.yaml"
    params.write_text(text, encoding="utf-8")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as caught:
            load_params(params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5 and peak < 50 * 2**20
    assert str(caught.value) == f"{params}{message}" and caught.value.exit_code == 2


def test_reasonable_aliases_and_nesting_are_read(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("labels: &l [GPE, ORG]\ntest: {labels: *l, deep: " + "[" * 50 + "]" * 50 + "}\n", encoding="utf-8")
    data = load_params(params)
    assert data["test"]["labels"] == ["GPE", "ORG"] and data["labels"] == ["GPE", "ORG"]


def test_a_yaml_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    from pipeline.common.config import MAX_YAML_CHARS

    params = tmp_path / "params.yaml"
    params.write_text("a: '" + "x" * MAX_YAML_CHARS + "'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{params}: more than 2,000,000 characters, too large for a YAML file"):
        load_params(params)


def test_an_error_line_quoting_a_huge_value_is_cut(tmp_path: Path) -> None:
    """A value is quoted in an error at a readable length, and a YAML error line is cut to MAX_ERROR_CHARS."""
    from pipeline.common.errors import MAX_ERROR_CHARS

    params = tmp_path / "params.yaml"
    aliases = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 3)}]\n" for i in range(1, 7))
    params.write_text(f"l0: &l0 ['{'x' * 5000}', b, c]\n{aliases}test:\n  model: *l6\n  labels: []\n  mode: a\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        section(Cfg, "test", params)
    assert str(caught.value).startswith(f"{params}:test.model: expected str, got list [[[")
    assert len(str(caught.value)) < 400 and "\n" not in str(caught.value)
    params.write_text("a: ['" + "x" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_params(params)
    assert len(str(caught.value)) <= MAX_ERROR_CHARS and "\n" not in str(caught.value)


ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ("model, entity_labels, stance_ends, stance_labels, batch_size, n_process, n_workers, shard_size, "
            "records_per_shard, max_bad_share, stance_model, stance_threshold")
PRE_WORKERS = "  n_workers: 1                    # Dask workers (1 = in this process, no"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  batch_size: 32 ", "  batch_sizes: 32 ", f"preannotate: unknown key(s) batch_sizes; expected {EXPECTED}"),
        ("  stance_threshold: 0.35 ", "  ", "preannotate: missing key 'stance_threshold'"),
        ("  batch_size: 32 ", "  batch_size: '32' ", "preannotate.batch_size: expected int, got str '32'"),
        ("  stance_threshold: 0.35 ", "  stance_threshold: 0 ", "preannotate.stance_threshold: must be in (0, 1], got 0"),
        ("  stance_threshold: 0.35 ", "  stance_threshold: 1.01 ", "preannotate.stance_threshold: must be in (0, 1], got 1.01"),
        (PRE_WORKERS, "  n_workers: 0 # (1 = in this process, no", "preannotate.n_workers: must be in [1, 1024], got 0"),
        (PRE_WORKERS, "  n_workers: 100000 # (1 = in this process, no", "preannotate.n_workers: must be in [1, 1024], got 100000"),
    ],
    ids=["unknown-key", "missing-key", "wrong-type", "threshold-0", "threshold-over-1", "no-workers", "too-many-workers"],
)
def test_a_bad_param_is_one_line_naming_file_section_and_key_and_exit_2(tmp_path: Path, old: str, new: str,
                                                                      message: str) -> None:
    import subprocess
    import sys

    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1
    params = tmp_path / "params.yaml"
    params.write_text(text.replace(old, new), encoding="utf-8")
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "Putin."}\n', encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "preannotate", "--input", str(tmp_path / "in.jsonl"), "--output",
         str(tmp_path / "out"), "--params", str(params)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert (run.returncode, run.stderr) == (2, f"error: {params}:{message}\n")
    assert not (tmp_path / "out").exists()
