"""Fuzz tier: a seeded generator of bad records, files and params for the readers of every stage.

Each case must end in a correct result or a one-line report naming its file (and line), never a traceback;
too many bad records exit 4, bad params exit 2; inputs are never changed. Most cases run the stages' cores
in-process, one batch file per stage; a few run the command line to check exit codes.
"""

from __future__ import annotations

import copy
import json
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import evaluate, ingest, merge, publish
from pipeline.common.config import section
from pipeline.common.contract import stage_config
from pipeline.common.errors import BadRecords, BadShareError, ConfigError, PipelineError
from pipeline.common.jsonl import loads, read_jsonl
from pipeline.common.provenance import file_digest
from pipeline.labelstudio.api import LabelStudioError
from pipeline.labelstudio.params import load_config as ls_config
from pipeline.labelstudio.pull import PullReport, snapshot_lines
from pipeline.labelstudio.tasks import read_tasks
from pipeline.preannotate import Params as PreParams
from pipeline.preannotate import check_record

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "publish"
RULES = (ROOT / "resources/entity_patterns.yaml", ROOT / "resources/actors.yaml", ROOT / "resources/stance_cues.yaml")
SEED = 15
PER_STAGE = 160  # mutated lines per JSON Lines reader
INGEST_FILES = 200
PULL_EXPORTS = 150
BAD_VALUES: list[Any] = [None, True, False, 0, -1, 2**63, 10**40, 1.5, -0.0, 1e308, "", " ", "x", "\u0000", "9" * 60,
                         [], {}, [None], [1, "a"], {"a": 1}, {"start": 0}, "\ud800"]
SKIPPED = re.compile(r"^(?P<stage>[a-z]+): skipped (?P<where>.+?): (?P<message>.+)$")


def fixture(name: str) -> list[dict[str, Any]]:
    """The records of a fixture JSON Lines file, as fresh dicts."""
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into a nested JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _dump(obj: Any) -> str:
    """JSON of `obj`; a lone surrogate is written as its escape, as a hand-made file might hold it."""
    return json.dumps(obj, ensure_ascii=True)


def mutate(rng: random.Random, record: dict[str, Any]) -> str:
    """One bad (or odd) JSON line made from a good record: a broken line or a field deleted, retyped or shifted."""
    line = _dump(record)
    kind = rng.randrange(12)
    if kind == 0:
        return line[: rng.randrange(1, len(line))]  # truncated
    if kind == 1:
        return line[:-1] + ', "n": ' + "9" * 5000 + "}"  # past Python's int-string limit
    if kind == 2:
        return line[:-1] + f', "lead_time": {rng.choice(["NaN", "Infinity", "-Infinity"])}}}'
    if kind == 3:
        return rng.choice(["[" * 100_000, "[1, 2]", '"text"', "42", "null", "true", "{}", '{"": 1}'])
    if kind == 4:
        return line[:-1] + ', "id": "dup"}'  # a key given twice: JSON keeps the last
    obj = copy.deepcopy(record)
    paths = list(_paths(obj))
    path = rng.choice(paths)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if kind in (5, 6):
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif kind in (7, 8, 9):
        parent[last] = rng.choice(BAD_VALUES)
    elif kind == 10 and isinstance(parent[last], int) and not isinstance(parent[last], bool):
        parent[last] = rng.choice([parent[last] + 1, parent[last] - 1, -parent[last] - 1, parent[last] + 10**6])
    else:
        parent[last] = copy.deepcopy(record) if rng.random() < 0.1 else "mutated text"
    return _dump(obj)


def fuzz_file(path: Path, records: list[dict[str, Any]], n: int, seed: int) -> list[str]:
    """Write `records` (good) then `n` mutated lines, and some raw bad bytes, to `path`; return the mutated lines."""
    rng = random.Random(seed)
    bad = [mutate(rng, rng.choice(records)) for _ in range(n)]
    with open(path, "wb") as out:
        out.writelines((_dump(rec) + "\n").encode() for rec in records)
        out.writelines(line.encode("utf-8", "surrogatepass") + b"\n" for line in bad)
        out.write(b'{"id": "z", "text": "a bad byte \xff here"}\n\xef\xbb\xbf{"id": "bom"}\n\x00\x00\n')
    return bad


def skipped(stderr: str, stage: str, *paths: Path) -> dict[Path, dict[int, str]]:
    """Per input file, line number -> message of each bad line the stage reported on stderr; checks their form."""
    found: dict[Path, dict[int, str]] = {p: {} for p in paths}
    for line in stderr.splitlines():
        m = SKIPPED.match(line)
        if not m or m["stage"] != stage:
            continue
        path = next((p for p in paths if m["where"].startswith(f"{p}:")), None)
        assert path is not None, line
        lineno = re.match(r"(\d+)(?: |$)", m["where"][len(f"{path}:"):])  # merge adds " annotation ID"
        assert lineno, line
        found[path][int(lineno[1])] = m["message"]
    return found


def lenient_params(tmp_path: Path, **shares: float) -> Path:
    """The team's params.yaml with every max_bad_share set to 1.0 (or as given per section)."""
    out, name = [], ""
    for line in (ROOT / "params.yaml").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            name = line.split(":")[0]
        if line.startswith("  max_bad_share:"):
            line = f"  max_bad_share: {shares.get(name, 1.0)}"
        out.append(line)
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def checked_run(fn: Callable[[], Any], capsys: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    """Run a stage core; only a one-line pipeline error may come out. Return its result (or error) and stderr."""
    try:
        result = fn()
    except PipelineError as exc:
        assert "\n" not in str(exc)
        result = exc
    return result, capsys.readouterr().err


# -- the JSON Lines readers of every stage ---------------------------------------------------------


def test_preannotate_reader(tmp_path: Path) -> None:
    path = tmp_path / "articles.jsonl"
    articles = [{"id": r["id"], "text": r["text"]} for r in fixture("preannotated.jsonl")]
    fuzz_file(path, articles, PER_STAGE * 2, SEED)
    before = file_digest(path)
    bad = BadRecords("preannotate", 1.0, quiet=True)
    good = []
    for lineno, obj in read_jsonl(path, bad):
        if problem := check_record(obj):
            bad.add(f"{path}:{lineno}", problem)
        else:
            good.append(lineno)
    assert good[:5] == [1, 2, 3, 4, 5] and len(bad) > PER_STAGE
    lines = len(path.read_bytes().splitlines())
    assert sorted(good + [int(p["where"].rsplit(":", 1)[1]) for p in bad.problems]) == list(range(1, lines + 1))
    assert all(p["where"].startswith(f"{path}:") and "\n" not in p["error"] for p in bad.problems)
    assert file_digest(path) == before


def test_push_reader(tmp_path: Path) -> None:
    path = tmp_path / "preannotated.jsonl"
    fuzz_file(path, fixture("preannotated.jsonl"), PER_STAGE * 2, SEED + 1)
    before = file_digest(path)
    cfg = ls_config(lenient_params(tmp_path))
    tasks = read_tasks(path, cfg)
    assert 5 <= len(tasks) < PER_STAGE * 2
    for task in tasks:  # what push would send is plain, finite, UTF-8-encodable JSON
        json.dumps(task, allow_nan=False, ensure_ascii=False).encode("utf-8")
    strict = ls_config(lenient_params(tmp_path, labelstudio=0.0))
    with pytest.raises(BadShareError) as err:
        read_tasks(path, strict)
    assert err.value.exit_code == 4 and "\n" not in str(err.value) and f"first: {path}:" in str(err.value)
    assert file_digest(path) == before


def test_push_reader_rejects_a_non_string_date(tmp_path: Path) -> None:
    """A list as `date` once reached the task's byline and raised TypeError; the article contract now stops it."""
    path = tmp_path / "preannotated.jsonl"
    record = {**fixture("preannotated.jsonl")[0], "date": ["2022-01-10"]}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(BadShareError, match=rf"first: {path}:1: field 'date' must be a string or null, got list"):
        read_tasks(path, ls_config(lenient_params(tmp_path, labelstudio=0.0)))


def test_merge_reads_bad_articles_and_bad_snapshots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pre, ann = tmp_path / "preannotated.jsonl", tmp_path / "annotations"
    ann.mkdir()
    snap = ann / "20220112T093000Z.jsonl"
    fuzz_file(pre, fixture("preannotated.jsonl"), PER_STAGE, SEED + 2)
    fuzz_file(snap, fixture("annotations/20220112T093000Z.jsonl"), PER_STAGE * 2, SEED + 3)
    before = (file_digest(pre), file_digest(snap))
    out, rep = tmp_path / "labeled.jsonl", tmp_path / "report.json"
    params = lenient_params(tmp_path)
    result, err = checked_run(lambda: merge.main(pre, ann, out, rep, params, RULES), capsys)
    assert result is None, result
    assert "Traceback" not in err
    reported = skipped(err, "merge", pre, snap)
    assert len(reported[pre]) > PER_STAGE // 2 and len(reported[snap]) > PER_STAGE // 2
    labeled = [loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert labeled and all(isinstance(r["id"], str) for r in labeled)
    json.loads(rep.read_text(encoding="utf-8"))
    assert (file_digest(pre), file_digest(snap)) == before
    strict = lenient_params(tmp_path, merge=0.0)
    result, _ = checked_run(lambda: merge.main(pre, ann, tmp_path / "l2.jsonl", rep, strict, RULES), capsys)
    assert isinstance(result, BadShareError) and not (tmp_path / "l2.jsonl").exists()


def test_evaluate_and_publish_readers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labeled = tmp_path / "labeled.jsonl"
    fuzz_file(labeled, fixture("labeled.jsonl"), PER_STAGE * 2, SEED + 4)
    before = file_digest(labeled)
    params = lenient_params(tmp_path)
    result, err = checked_run(lambda: evaluate.main(labeled, tmp_path / "m", tmp_path / "p", params), capsys)
    assert result is None, result
    assert len(skipped(err, "evaluate", labeled)[labeled]) > PER_STAGE
    for doc in (tmp_path / "m").glob("*.json"):
        loads(doc.read_text(encoding="utf-8").replace("\n", " "))  # strict: no NaN or Infinity
    cfg = publish.load_config(params)
    result, err = checked_run(lambda: list(publish.scan_labeled(labeled, cfg, tmp_path)), capsys)
    assert isinstance(result, list) and 5 <= len(result) < PER_STAGE
    assert len(skipped(err, "publish", labeled)[labeled]) > PER_STAGE
    assert file_digest(labeled) == before


def test_pull_reads_bad_exports(tmp_path: Path) -> None:
    """A corrupted Label Studio export is a correct snapshot or one LabelStudioError, never a traceback."""
    tasks = fixture("annotations/20220112T093000Z.jsonl")
    rng = random.Random(SEED + 10)
    current = {t["data"]["article_id"]: t["data"]["text_hash"] for t in tasks}
    raw = tmp_path / "export.json"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(PULL_EXPORTS):
        items = [_dump(t) for t in tasks] + [mutate(rng, rng.choice(tasks)) for _ in range(rng.randrange(1, 4))]
        rng.shuffle(items)
        text = "[" + ",\n".join(items) + "]"
        if rng.random() < 0.2:
            text = text[: rng.randrange(len(text))]
        raw.write_bytes(text.encode("utf-8", "surrogatepass"))
        report = PullReport(snapshot="s")
        try:
            lines = list(snapshot_lines(raw, report, current if rng.random() < 0.5 else None))
        except LabelStudioError as exc:
            assert str(exc).startswith("the export is not valid JSON: ") and "\n" not in str(exc)
            outcomes["error"] += 1
            continue
        outcomes["ok"] += 1
        assert report.tasks == len(lines) >= len(tasks)
        json.dumps(report.as_dict(), allow_nan=False)  # the pull report is writable
        for line in lines:
            assert isinstance(loads(line), dict)
            line.encode("utf-8")
    assert outcomes["ok"] > 10 and outcomes["error"] > 10


# -- ingest: bad corpus files ------------------------------------------------------------------------


def bad_corpus(folder: Path, seed: int, n: int) -> int:
    """Write `n` bad or odd corpus files (.txt, .jsonl, .csv) into `folder`; return how many records they hold."""
    rng = random.Random(seed)
    body = "Foreign ministers met in Geneva on Monday to discuss the ceasefire and an exchange of prisoners. " * 3
    good = {"text": body, "title": "Talks", "date": "2024-03-01", "url": "https://example.org/a", "source": "ex"}
    records = 0
    for i in range(n):
        kind = rng.randrange(9)
        name = f"{i:04d}"
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
            (folder / f"{name}.txt").write_bytes(data)
            records += 1
        elif kind == 1:
            text = rng.choice(["", "   \n\n", "\ufeff", body[:10], body + "\x00", body.encode().decode("latin-1")])
            (folder / f"{name}.txt").write_bytes(text.encode("utf-8", "surrogatepass"))
            records += 1
        elif kind == 2:
            (folder / f"{name}.txt").write_bytes(rng.choice([b"\xff\xfe", b"\xfe\xff"]) + body.encode("utf-16-le")[:-1])
            records += 1
        elif kind in (3, 4, 5):
            lines = [mutate(rng, good) for _ in range(rng.randrange(1, 6))]
            (folder / f"{name}.jsonl").write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
            records += len(lines)
        elif kind in (6, 7):
            rows = [rng.choice(['text,title\n', 'title\n', '"text\n', 'text,title,extra\n']),
                    *(rng.choice([f'"{body}",T\n', f'"{body}\n', f'{body},T,X\n', '\n', f'"a""b",{body}\n',
                                  f"{'x' * 5000},T\n", '"\x00",T\n']) for _ in range(rng.randrange(1, 5)))]
            (folder / f"{name}.csv").write_text("".join(rows), encoding="utf-8")
            records += len(rows)
        else:
            url = rng.choice(["http://[", "https://[::1", "javascript:alert(1)", "https://u:p@example.org/x",
                              "ftp://x", "http://x:99999/", "", " ", "https://example.org/" + "a" * 3000])
            (folder / f"{name}.jsonl").write_text(json.dumps({**good, "text": f"{body} {i}", "url": url}) + "\n",
                                                  encoding="utf-8")
            records += 1
    return records


def test_ingest_reads_bad_corpus_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    n_files = INGEST_FILES
    bad_corpus(corpus, SEED + 5, n_files)
    before = {p.name: file_digest(p) for p in corpus.iterdir()}
    out = tmp_path / "out"
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  language: en\n  max_article_bytes: 4000\n  min_text_chars: 50\n"
                      "  near_duplicate_threshold: 0.9\n  shingle_size: 5\n  max_bad_share: 1.0\n  n_workers: 1\n  shard_size: 2000\n  records_per_shard: 10000\n", encoding="utf-8")
    result, err = checked_run(lambda: ingest.main(corpus=corpus, output=out / "a.jsonl", report=out / "r.json",
                                                  patterns=ROOT / "resources/boilerplate.yaml", params=params), capsys)
    assert result is None, result
    report = json.loads((out / "r.json").read_text(encoding="utf-8"))
    assert report["counts"]["files"] == n_files and report["counts"]["bad_records"] > n_files // 2
    for problem in report["bad_records"]:
        where = problem["where"]
        assert where.startswith(f"{corpus}/") and "\n" not in problem["error"], problem
        file_part = where[len(f"{corpus}/"):].split(":")
        assert file_part[0] in before and (len(file_part) == 1 or file_part[1].isdigit()), problem
    for line in (out / "a.jsonl").read_text(encoding="utf-8").splitlines():
        article = loads(line)
        assert article["url"] is None or (article["url"].startswith(("http://", "https://")) and "@" not in article["url"])
    assert "Traceback" not in err
    assert {p.name: file_digest(p) for p in corpus.iterdir()} == before


ODD_FILES = 120
SENTENCE = "Officials from Russia{sep}Moscow said the ministers met in Geneva on Monday to discuss the ceasefire. "
ENCODED = {"shift_jis": "東京で外相会談が開かれ、停戦と捕虜交換について話し合った。ロシアとウクライナの代表も出席した。" * 3,
           "gb18030": "外交部长周一在日内瓦举行会谈，讨论停火和交换战俘问题。俄罗斯和乌克兰代表出席，双方同意继续谈判。" * 3,
           "cp1251": "Министры иностранных дел встретились в Женеве в понедельник, чтобы обсудить прекращение огня. " * 3,
           "cp1252": "Diplomats met in Geneva’s old town to discuss the ceasefire and an exchange of prisoners. " * 3}


def odd_corpus(folder: Path, seed: int, n: int) -> dict[str, str]:
    """Write `n` corpus files of the classes of issue 29 (line separators, joiners, bidi controls, encodings, random
    bytes, HTML, UTF-16 CSV, duplicate columns); return, per file whose text is known, what it must read as."""
    rng = random.Random(seed)
    known: dict[str, str] = {}
    for i in range(n):
        kind, name = rng.randrange(7), f"{i:04d}"
        if kind == 0:  # separators that must end a line, never fuse words
            sep = rng.choice(["\v", "\f", "\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\r"])
            (folder / f"{name}.txt").write_text(SENTENCE.format(sep=sep) * 3, encoding="utf-8", newline="")
        elif kind == 1:  # joiners and bidi controls, in the body and in metadata
            ctrl = rng.choice(["\u200d", "\u200c", "\u202e", "\u202d", "\u2066", "\u2069", "\u200e", "\u200f"])
            record = {"text": f"👩{ctrl}👧 " + SENTENCE.format(sep=" ") * 3, "title": f"{ctrl}Talks{ctrl}",
                      "source": f"Wire{ctrl}", "date": f"{ctrl}2024-03-01"}
            (folder / f"{name}.jsonl").write_text(json.dumps(record, ensure_ascii=rng.random() < 0.5) + "\n",
                                                  encoding="utf-8")
        elif kind == 2:  # legacy encodings: decoded exactly or reported, never mojibake
            encoding = rng.choice(sorted(ENCODED))
            (folder / f"{name}.txt").write_bytes(ENCODED[encoding].encode(encoding))
            known[f"{name}.txt"] = ENCODED[encoding]
        elif kind == 3:  # random bytes without NUL: never an article
            (folder / f"{name}.txt").write_bytes(bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 3000))))
            known[f"{name}.txt"] = ""
        elif kind == 4:  # HTML documents and fragments
            body = "".join(f"<p>{SENTENCE.format(sep=' ')}</p>" for _ in range(3))
            (folder / f"{name}.txt").write_text(rng.choice([
                f"<!DOCTYPE html><html><head><title>T</title><script>evil()</script></head><body>{body}</body></html>",
                f"<html><body><style>p{{}}</style>{body}<br/>", f"<body>{body}", "<html>", "<!doctype html><p>x",
                f"<html><body>{body}</html>\x00"]), encoding="utf-8")
        elif kind == 5:  # UTF-16 CSV, with and without its BOM, whole or cut
            data = f'title,text\nT,"{SENTENCE.format(sep=" ") * 3}"\n'.encode(rng.choice(["utf-16", "utf-16-le"]))
            (folder / f"{name}.csv").write_bytes(data[: rng.choice([len(data), len(data) - 1, len(data) // 2])])
        else:  # duplicate and odd columns
            header = rng.choice(["text,text", "text,title,TEXT", "title,title,text", "text, text ", "text,title"])
            cells = ",".join([f'"{SENTENCE.format(sep=" ") * 3}"'] * len(header.split(",")))
            (folder / f"{name}.csv").write_text(f"{header}\n{cells}\n", encoding="utf-8")
    return known


def test_ingest_reads_odd_text_and_encodings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    known = odd_corpus(corpus, SEED + 10, ODD_FILES)
    before = {p.name: file_digest(p) for p in corpus.iterdir()}
    out = tmp_path / "out"
    params = lenient_params(tmp_path, ingest=1.0)
    result, err = checked_run(lambda: ingest.main(corpus=corpus, output=out / "a.jsonl", report=out / "r.json",
                                                  patterns=ROOT / "resources/boilerplate.yaml", params=params), capsys)
    assert result is None, result
    assert "Traceback" not in err
    report = json.loads((out / "r.json").read_text(encoding="utf-8"))
    for problem in report["bad_records"]:
        file_part = problem["where"][len(f"{corpus}/"):].split(":")
        assert file_part[0] in before and (len(file_part) == 1 or file_part[1].isdigit()), problem
        assert "\n" not in problem["error"] and len(problem["error"]) < 300, problem
    articles = [loads(line) for line in (out / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    bidi = set("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    for article in articles:
        assert "RussiaMoscow" not in article["text"] and "<" not in article["text"], article
        assert not bidi & set("".join(article[k] or "" for k in ("title", "source", "date"))), article
        assert not {"\u202d", "\u202e"} & set(article["text"]), article
        if (expected := known.get(article["source_file"])) is not None:
            assert expected and article["text"] == expected.strip(), article["source_file"]  # exact, never mojibake
    assert any("\u200d" in a["text"] for a in articles) and any("\u200c" in a["text"] for a in articles)
    assert {a["source_file"] for a in articles} & {f for f, t in known.items() if t}  # some encodings decoded
    assert not {a["source_file"] for a in articles} & {f for f, t in known.items() if not t}  # random bytes never
    assert report["html_extracted"] and any(f.endswith(".csv:2") for f in {a["source_file"] for a in articles})
    assert {p.name: file_digest(p) for p in corpus.iterdir()} == before


# -- params -------------------------------------------------------------------------------------------


PARAM_VALUES = [".nan", ".inf", "-.inf", "1e30", "1.0e+30", "-1", "0", "'x'", "[]", "{}", "null", "yes", "9" * 40,
                "[.nan]", "{a: 1}", "!!python/object:os.system ls", "&a 1", "'\\ud800'"]
LOADERS: list[tuple[str, Callable[[Path], Any]]] = [
    ("ingest", lambda p: section(ingest.IngestParams, "ingest", p)),
    ("preannotate", lambda p: section(PreParams, "preannotate", p)),
    ("labelstudio", ls_config),
    ("merge", lambda p: stage_config(merge.MergeConfig, "merge", p)),
    ("evaluate", lambda p: section(evaluate.EvaluateConfig, "evaluate", p)),
    ("publish", publish.load_config),
]


READERS = {"preannotate": {"preannotate", "labelstudio", "merge", "publish"}}  # sections read by several loaders
PARAMS_CASES = 400


def params_mutations() -> Iterator[tuple[str, str, str]]:
    """(label, section, params.yaml text) with one key of the team's params.yaml retyped, removed, repeated or added."""
    lines = (ROOT / "params.yaml").read_text(encoding="utf-8").splitlines()
    name = ""
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            name = line.split(":")[0]
        m = re.match(r"^(\s+)([a-z_]+):(\s*)(.*?)(\s+#.*)?$", line)
        if not m:
            continue
        for value in PARAM_VALUES:
            yield f"line {i + 1} = {value}", name, "\n".join([*lines[:i], f"{m[1]}{m[2]}: {value}", *lines[i + 1:]])
        if m[4]:
            yield f"line {i + 1} removed", name, "\n".join(lines[:i] + lines[i + 1:])
            yield f"line {i + 1} twice", name, "\n".join([*lines[: i + 1], line, *lines[i + 1:]])
            yield f"line {i + 1} unknown", name, "\n".join([*lines[: i + 1], f"{m[1]}{m[2]}_typo: 1", *lines[i + 1:]])


def test_params_mutations_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    mutations = list(params_mutations())
    assert len(mutations) > 600
    cases = errors = 0
    for label, name, text in random.Random(SEED).sample(mutations, PARAMS_CASES):
        path.write_text(text + "\n", encoding="utf-8")
        for stage, load in LOADERS:
            if stage not in READERS.get(name, {name}):
                continue
            cases += 1
            try:
                load(path)
            except ConfigError as exc:
                errors += 1
                message = str(exc)
                assert message.startswith(str(path)) and "\n" not in message, (label, message)
            except PipelineError as exc:  # pragma: no cover - a failure message
                pytest.fail(f"{label}: {type(exc).__name__} instead of ConfigError: {exc}")
    assert cases >= PARAMS_CASES and errors > cases // 3


def test_fuzz_tier_has_at_least_1000_cases() -> None:
    readers = {"preannotate": 2 * PER_STAGE, "push": 2 * PER_STAGE, "merge": 3 * PER_STAGE, "evaluate+publish": 2 * PER_STAGE}
    assert sum(readers.values()) + INGEST_FILES + ODD_FILES + PARAMS_CASES + PULL_EXPORTS >= 1000


# -- through the command line: exit codes ----------------------------------------------------------


def cli(*args: Any) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS`."""
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def one_line_errors(run: subprocess.CompletedProcess[str], stage: str) -> None:
    """No traceback; every stderr line is the stage's own report or one `error:` line."""
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    for line in run.stderr.splitlines():
        # the progress bar clears itself to an empty line
        assert not line.strip() or line.startswith((f"{stage}: ", "error: ")), line


def test_every_stage_command_on_fuzzed_input_exits_0_or_4(tmp_path: Path) -> None:
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    corpus.mkdir()
    out.mkdir()
    bad_corpus(corpus, SEED + 6, 40)
    pre, ann, labeled = tmp_path / "pre.jsonl", tmp_path / "ann", tmp_path / "labeled.jsonl"
    ann.mkdir()
    fuzz_file(pre, fixture("preannotated.jsonl"), 40, SEED + 7)
    fuzz_file(ann / "20220112T093000Z.jsonl", fixture("annotations/20220112T093000Z.jsonl"), 40, SEED + 8)
    fuzz_file(labeled, fixture("labeled.jsonl"), 40, SEED + 9)
    inputs = {p: file_digest(p) for p in [*corpus.iterdir(), pre, labeled, *ann.iterdir()]}
    commands = {
        "ingest": ["--corpus", corpus, "--output", out / "a.jsonl", "--report", out / "r.json",
                   "--patterns", ROOT / "resources/boilerplate.yaml"],
        "preannotate": ["--input", pre, "--output", out / "p.jsonl"],
        "merge": ["--preannotated", pre, "--annotations", ann, "--output", out / "l.jsonl", "--report", out / "m.json",
                  "--patterns", RULES[0], "--actors", RULES[1], "--lexicon", RULES[2]],
        "evaluate": ["--input", labeled, "--metrics", out / "metrics", "--plots", out / "plots"],
        "publish": ["--input", labeled, "--output", out / "ds", "--releases", out / "rel"],
    }
    for strict, code in ((False, 0), (True, 4)):
        params = lenient_params(tmp_path, **(dict.fromkeys(commands, 0.0) if strict else {}))
        for stage, args in commands.items():
            run = cli(stage, *args, "--params", params)
            one_line_errors(run, stage)
            assert run.returncode == code, (stage, run.stderr[-1000:])
    bad_params = tmp_path / "bad.yaml"
    bad_params.write_text((ROOT / "params.yaml").read_text(encoding="utf-8").replace("  batch_size: 32", "  batch_size: .nan"))
    run = cli("preannotate", "--input", pre, "--output", out / "p2.jsonl", "--params", bad_params)
    assert run.returncode == 2 and run.stderr.startswith(f"error: {bad_params}:preannotate.batch_size")
    assert {p: file_digest(p) for p in inputs} == inputs
