"""Fuzz tier: a seeded generator of bad records, files and params for the readers of every stage.

Each case must end in a correct result or a one-line report naming its file (and line), never a traceback;
too many bad records exit 4, bad params exit 2; inputs are never changed. Most cases run the stages' cores
in-process, one batch file per stage; a few run the command line to check exit codes. Issue 29's classes
follow: YAML bombs in params, gold and actors; corrupt pre-annotation caches; control characters; odd
snapshot folders (earlier outputs kept whenever a stage stops).
"""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import evaluate, ingest, merge, preannotate, publish
from pipeline.common.config import section
from pipeline.common.contract import stage_config
from pipeline.common.errors import BadRecords, BadShareError, ConfigError, PipelineError
from pipeline.common.jsonl import loads, read_jsonl
from pipeline.common.provenance import file_digest
from pipeline.entities.cache import FILE
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
        lineno = re.match(r"(?:task )?(\d+)(?: |$)", m["where"][len(f"{path}:"):])  # merge adds " annotation ID"
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


CONTROL_FILES = 60
# Controls that carry no text: C0 (not whitespace nor a line break), DEL, terminal escapes; each must vanish.
CONTROLS = [*map(chr, [*range(1, 9), 0x0e, 0x0f, 0x10, 0x14, 0x1a, 0x1b, 0x1f, 0x7f]), "\x1b[31m", "\x1b[0m", "\x1b[2J"]


def control_corpus(folder: Path, seed: int, n: int) -> dict[str, str]:
    """Write `n` corpus files with controls inside words (.txt and .jsonl body and metadata), UTF-32 with its BOM and
    CRLF line ends; return, per file, the text its article must hold (controls gone, the word whole)."""
    rng = random.Random(seed)
    expected: dict[str, str] = {}
    for i in range(n):
        kind, name = rng.randrange(4), f"{i:04d}"
        body = f"Report {i}. " + SENTENCE.format(sep=" ") * 3  # one text per file: no duplicate is dropped
        if kind < 2:
            ctrl = "".join(rng.choice(CONTROLS) for _ in range(rng.randrange(1, 4)))
            dirty = body.replace("Geneva", f"Gen{ctrl}eva").replace("ministers", f"{ctrl}ministers{ctrl}")
            if kind == 0:
                (folder / f"{name}.txt").write_text(dirty, encoding="utf-8")
            else:
                record = {"text": dirty, "title": f"Ta{ctrl}lks", "source": f"{ctrl}Wire", "date": f"2024-03-01{ctrl}"}
                (folder / f"{name}.jsonl").write_text(json.dumps(record, ensure_ascii=rng.random() < 0.5) + "\n",
                                                      encoding="utf-8")
            expected[f"{name}.txt" if kind == 0 else f"{name}.jsonl:1"] = body.strip()
        elif kind == 2:
            codec, bom = rng.choice([("utf-32-le", b"\xff\xfe\x00\x00"), ("utf-32-be", b"\x00\x00\xfe\xff")])
            (folder / f"{name}.txt").write_bytes(bom + body.encode(codec))
            expected[f"{name}.txt"] = body.strip()
        else:
            lines = body.replace(". ", ".\r\n").strip()
            (folder / f"{name}.txt").write_bytes(lines.encode("utf-8"))
            expected[f"{name}.txt"] = lines.replace("\r\n", "\n\n")  # each line of a .txt file a paragraph
    return expected


def test_ingest_drops_control_characters_and_reads_utf32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = control_corpus(corpus, SEED + 50, CONTROL_FILES)
    before = {p.name: file_digest(p) for p in corpus.iterdir()}
    out = tmp_path / "out"
    result, err = checked_run(lambda: ingest.main(corpus=corpus, output=out / "a.jsonl", report=out / "r.json",
                                                  patterns=ROOT / "resources/boilerplate.yaml",
                                                  params=lenient_params(tmp_path)), capsys)
    assert result is None and "Traceback" not in err, result
    report = json.loads((out / "r.json").read_text(encoding="utf-8"))
    assert report["bad_records"] == []
    articles = {a["source_file"]: a for a in map(loads, (out / "a.jsonl").read_text(encoding="utf-8").splitlines())}
    assert set(articles) == set(expected)
    for name, article in articles.items():
        assert article["text"] == expected[name], name  # every control gone, no word split or fused
        for key in ("title", "source", "date"):
            assert not any(unicodedata.category(c) == "Cc" for c in article[key] or ""), (name, key, article[key])
    assert {a["title"] for a in articles.values()} >= {"Talks"} and {a["source"] for a in articles.values()} >= {"Wire"}
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
    issue_29 = sum(YAML_CASES.values()) + CACHE_CASES + SNAPSHOT_CASES + CONTROL_FILES  # bombs, caches, folders, controls
    assert issue_29 >= 200


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


# -- issue 29's classes: YAML bombs, cache corruption, odd snapshot folders ---------------------------------------
# Each class is generated (seeded) and fed to the stage that reads it; the promise: no traceback, one line naming
# the file (and line), inputs byte-identical, earlier outputs kept.

YAML_CASES = {"params": 40, "gold": 16, "actors": 20}  # per file the stages read
DEPTH = 5000


BOMB_KINDS = 8


def yaml_bomb(kind: int) -> list[str]:
    """The lines (unindented) of one YAML value that nests 5,000 deep or whose aliases stand for a great many nodes."""
    if kind == 0:
        return ["[" * DEPTH + "]" * DEPTH]
    if kind == 1:
        return ["{a: " * DEPTH + "1" + "}" * DEPTH]
    if kind == 2:
        return ["[{a: " * (DEPTH // 2) + "1" + "}]" * (DEPTH // 2)]
    if kind == 3:
        return ["- " * DEPTH + "x"]
    if kind == 4:  # "billion laughs": ten levels of ten aliases of the level below
        level = ", ".join(["x"] * 10)
        return [f"- &a0 [{level}]", *(f"- &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10))]
    if kind == 5:
        return ["- &x 1", "- [" + ", ".join(["*x"] * 2000) + "]"]
    if kind == 6:
        return ["&r [a, *r]"]
    return ["- &big [" + ", ".join(["0"] * 5000) + "]", "- [" + ", ".join(["*big"] * 10) + "]"]


def plant_bomb(rng: random.Random, text: str, kind: int) -> tuple[str, int, int]:
    """`text` with a random key's scalar value (or a new last key) replaced by a bomb of `kind`; its first and last line."""
    lines = text.splitlines()
    bomb = yaml_bomb(kind)
    keys = [i for i, line in enumerate(lines) if re.match(r"^\s*[a-z_]+: \S", line) and not line.lstrip().startswith("#")]
    if not keys or rng.random() < 0.2:
        i, indent, key = len(lines), "", "zz_bomb"
        lines.append("")
    else:
        i = rng.choice(keys)
        m = re.match(r"^(\s*)([a-z_]+):", lines[i])
        assert m
        indent, key = m[1], m[2]
    if len(bomb) == 1 and not bomb[0].startswith("- ") and rng.random() < 0.5:
        planted, first = [f"{indent}{key}: {bomb[0]}"], i + 1
    else:
        planted, first = [f"{indent}{key}:", *(f"{indent}  {b}" for b in bomb)], i + 2
    new = [*lines[:i], *planted, *lines[i + 1:]]
    return "\n".join(new) + "\n", first, first + len(bomb) - 1


def bomb_refused(exc: PipelineError, path: Path, first: int, last: int) -> None:
    """`exc` is one line naming `path` and a line of the bomb."""
    message = str(exc)
    m = re.match(rf"^{re.escape(str(path))}:(\d+): invalid YAML: ", message)
    assert m and "\n" not in message, message
    assert first <= int(m[1]) <= last, (message, first, last)


def yaml_cases(name: str, cases: int, tmp_path: Path, source: Path, consume: Callable[[Path], Any],
               error: type[PipelineError]) -> None:
    """Plant `cases` bombs in copies of `source` named `name` and feed each to `consume`."""
    rng = random.Random(SEED + cases)
    kinds = set()
    for n in range(cases):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        path = folder / name
        text, first, last = plant_bomb(rng, source.read_text(encoding="utf-8"), n % BOMB_KINDS)
        path.write_text(text, encoding="utf-8")
        before = file_digest(path)
        with pytest.raises(PipelineError) as caught:
            consume(path)
        assert isinstance(caught.value, error) and caught.value.exit_code in (2, 3), caught.value
        bomb_refused(caught.value, path, first, last)
        kinds.add(str(caught.value).split("invalid YAML: ")[1].split(" (")[0].rstrip("0123456789 ,"))
        assert file_digest(path) == before
    assert len(kinds) == 4, kinds  # depth, many aliases, aliased nodes, recursion


def test_yaml_bombs_in_params_are_one_line_config_errors(tmp_path: Path) -> None:
    rng = random.Random(SEED + 20)

    def consume(path: Path) -> None:
        _, load = rng.choice(LOADERS)
        load(path)

    yaml_cases("params.yaml", YAML_CASES["params"], tmp_path, ROOT / "params.yaml", consume, ConfigError)


def test_yaml_bombs_in_gold_files_are_one_line_gold_errors(tmp_path: Path) -> None:
    from pipeline.gold.files import GoldError
    from pipeline.gold.files import main as gold_main

    articles = tmp_path / "articles.jsonl"
    articles.write_text("", encoding="utf-8")
    first, source = sorted((ROOT / "gold").glob("*.yaml"))[:2]

    def consume(path: Path) -> None:
        shutil.copy(first, path.parent / first.name)  # the bomb read after a good gold file, as the stage reads gold/
        (path.parent / "out").mkdir()
        (path.parent / "out" / "gold.jsonl").write_text("earlier\n", encoding="utf-8")
        gold_main(gold=path.parent, articles=articles, output=path.parent / "out" / "gold.jsonl",
                  params=ROOT / "params.yaml")

    yaml_cases(source.name, YAML_CASES["gold"], tmp_path, source, consume, GoldError)
    assert {p.read_text(encoding="utf-8") for p in tmp_path.glob("*/out/gold.jsonl")} == {"earlier\n"}


def test_yaml_bombs_in_actors_are_one_line_config_errors_of_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = tmp_path / "annotations"
    shutil.copytree(FIXTURES / "annotations", ann)
    params = lenient_params(tmp_path)

    def consume(path: Path) -> None:
        out = path.parent / "out"
        shutil.copytree(FIXTURES, out, ignore=shutil.ignore_patterns("annotations", "*.py"))  # an earlier run's output
        merge.main(FIXTURES / "preannotated.jsonl", ann, out / "labeled.jsonl", out / "report.json", params,
                   (RULES[0], path, RULES[2]))

    yaml_cases("actors.yaml", YAML_CASES["actors"], tmp_path, RULES[1], consume, ConfigError)
    earlier = file_digest(FIXTURES / "labeled.jsonl")
    assert {file_digest(p) for p in tmp_path.glob("*/out/labeled.jsonl")} == {earlier}
    assert not list(tmp_path.glob("*/out/report.json")) and "Traceback" not in capsys.readouterr().err


def test_yaml_bombs_from_the_command_line_exit_2_or_3_with_one_error_line(tmp_path: Path) -> None:
    rng = random.Random(SEED + 25)
    gold = tmp_path / "gold"
    gold.mkdir()
    text, first, last = plant_bomb(rng, next((ROOT / "gold").glob("*.yaml")).read_text(encoding="utf-8"), 4)
    (gold / "g.yaml").write_text(text, encoding="utf-8")
    actors = tmp_path / "actors.yaml"
    a_text, a_first, a_last = plant_bomb(rng, RULES[1].read_text(encoding="utf-8"), 0)
    actors.write_text(a_text, encoding="utf-8")
    inputs = {p: file_digest(p) for p in (gold / "g.yaml", actors)}
    runs = [
        (cli("gold", "--gold", gold, "--articles", FIXTURES / "preannotated.jsonl", "--output", tmp_path / "g.jsonl"),
         3, gold / "g.yaml", first, last),
        (cli("merge", "--preannotated", FIXTURES / "preannotated.jsonl", "--annotations", FIXTURES / "annotations",
             "--output", tmp_path / "l.jsonl", "--report", tmp_path / "m.json", "--patterns", RULES[0],
             "--actors", actors, "--lexicon", RULES[2], "--params", lenient_params(tmp_path)),
         2, actors, a_first, a_last),
    ]
    for run, code, path, lo, hi in runs:
        assert run.returncode == code, run.stderr[-2000:]
        [line] = [x for x in run.stderr.splitlines() if x.startswith("error: ")]
        assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr[-2000:]
        bomb_refused(ConfigError(line.removeprefix("error: ")), path, lo, hi)
    assert {p: file_digest(p) for p in inputs} == inputs


CACHE_CASES = 40
CACHE_TEXTS = [
    "Lavrov accused NATO of ignoring Russia's concerns about the alliance's expansion.",
    "Biden spoke with Zelensky about Ukraine on Friday.\nPutin warned NATO.",
    "Stoltenberg criticised Moscow for the attack on Kiev.",
    "China urged the United States to stop arming Taiwan, the foreign ministry in Beijing said.",
    "The European Union condemned Iran for supplying drones to Russia.",
    "Erdogan praised Sweden and Finland for their talks with Turkey.",
]
SUMMARY = re.compile(r"^preannotate: wrote (\d+) records to .*: (\d+) annotated, (\d+) from cache, 0 skipped$")


def _rows(db: sqlite3.Connection) -> list[tuple[str, Any]]:
    return db.execute("SELECT key, value FROM annotation ORDER BY key").fetchall()


def _spans(entry: dict[str, Any]) -> list[dict[str, Any]]:
    ann = entry["annotation"]
    return [*ann["sentences"], *ann["entities"], *(s["cue"] for s in ann["stances"])]


def corrupt_cache(rng: random.Random, database: Path, kind: int) -> list[str]:
    """Damage the cache as a bad disk, a foreign writer or a crash would: one of ten kinds of entry or file damage;
    of entries changed one by one (kinds 0-4), what each must be taken as (`entry_outcome`)."""
    outcomes: list[str] = []
    if kind >= 5:
        data = bytearray(database.read_bytes())
        if kind == 5:  # bit rot past the header: page structure or stored values
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(100, len(data))] = rng.randrange(256)
        elif kind == 6:
            del data[rng.randrange(len(data)):]
        elif kind == 7:
            data = bytearray(rng.choice([b"", data[:100], rng.randbytes(len(data)), b"SQLite format 3\x00" * 64]))
        elif kind == 8:  # a crash's leftovers: garbage write-ahead log and shared memory beside the file
            database.with_name(f"{database.name}-wal").write_bytes(rng.randbytes(rng.randrange(32, 9000)))
            database.with_name(f"{database.name}-shm").write_bytes(rng.randbytes(rng.randrange(0, 40000)))
        if kind != 9:
            database.write_bytes(bytes(data))
            return outcomes
    db = sqlite3.connect(database)
    with db:
        rows = _rows(db)
        if kind == 9:  # the table of another writer: NULLs and numbers where JSON text belongs
            db.execute("DROP TABLE annotation")
            db.execute("CREATE TABLE annotation (key TEXT PRIMARY KEY, value)")
            db.executemany("INSERT INTO annotation VALUES (?, ?)",
                           [(k, rng.choice([None, 7, 1.5, v.encode(), v])) for k, v in rows])
        for key, value in rng.sample(rows, rng.randrange(1, len(rows) + 1)) if kind < 5 else []:
            entry = json.loads(value)
            if kind == 0:
                new: Any = mutate(rng, entry)
            elif kind == 1:  # an offset moved by one: still inside the text
                span = rng.choice(_spans(entry))
                span[rng.choice(["start", "end"])] += rng.choice([-1, 1])
                new = _dump(entry)
            elif kind == 2:  # another text's entry under this key
                new = rng.choice([v for k, v in rows if k != key])
            elif kind == 3:  # a label, score or actor of another value
                entity = rng.choice(entry["annotation"]["entities"])
                field_ = rng.choice(["label", "score", "actor"])
                entity[field_] = rng.choice({"label": ["ORG", "LOC", "PERSON", "GPE"], "score": [0.0, 0.5, 1.0],
                                             "actor": ["USA", "RUS", None, "XYZ"]}[field_])
                new = _dump(entry)
            else:  # cut, not UTF-8 (a text value of bad bytes: SQLite refused to read it as text), not an object
                at = rng.randrange(len(value))
                new = rng.choice([value[:at], value[:at].encode() + b"\xff" + value[at:].encode(), 12, "null", "[]"])
            db.execute("UPDATE annotation SET value = CAST(? AS TEXT) WHERE key = ?", (new, key))
            outcomes.append(entry_outcome(value, new))
    db.close()
    return outcomes


def entry_outcome(old: str, new: Any) -> str:
    """What a changed entry must be taken as: "hit" (same hashes and annotation), "miss" (no hashes: an entry of an
    older format, silently recomputed) or "bad" (reported, recomputed)."""
    if isinstance(new, bytes):  # as the cache reads a text value of bad UTF-8
        new = new.decode("utf-8", "surrogateescape")
    try:
        entry = json.loads(str(new) if isinstance(new, int) else new)
    except (ValueError, RecursionError):
        return "bad"
    if not isinstance(entry, dict):
        return "bad"
    if "text_sha256" not in entry or "annotation_sha256" not in entry:
        return "miss"
    before = json.loads(old)
    same = all(entry.get(k) == before[k] for k in ("text_sha256", "annotation_sha256", "annotation"))
    return "hit" if same else "bad"


def test_a_corrupt_annotation_cache_is_reported_and_the_output_is_a_clean_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "articles.jsonl"
    src.write_text("".join(json.dumps({"id": f"a{i}", "text": t}) + "\n" for i, t in enumerate(CACHE_TEXTS)),
                   encoding="utf-8")
    before = file_digest(src)
    params, (patterns, actors, lexicon) = ROOT / "params.yaml", RULES

    def run(out: Path, cache: Path | None) -> tuple[int, int, list[str]]:
        """(annotated, from cache, warnings) of one in-process run; nothing else may reach stderr."""
        preannotate.main(src, out, params, patterns, actors, lexicon, cache=cache)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        [summary] = [m for line in lines if (m := SUMMARY.match(line))]
        warnings = [x for x in lines if x.strip() and not x.startswith(f"{preannotate.STAGE}: ")]  # else: progress
        assert all(line.startswith(f"warning: {cache}/{FILE}: ") for line in warnings), warnings
        return int(summary[2]), int(summary[3]), warnings

    plain = tmp_path / "plain.jsonl"
    run(plain, None)
    filled = tmp_path / "filled"
    assert run(tmp_path / "first.jsonl", filled)[:2] == (len(CACHE_TEXTS), 0)
    for side in filled.glob(f"{FILE}-*"):
        side.unlink()
    rng = random.Random(SEED + 30)
    reported = 0
    for n in range(CACHE_CASES):
        kind, cache, out = n % 10, tmp_path / f"cache{n}", tmp_path / f"out{n}.jsonl"
        shutil.copytree(filled, cache)
        expected = Counter(corrupt_cache(rng, cache / FILE, kind))
        damaged = file_digest(cache / FILE)
        annotated, cached, warnings = run(out, cache)
        assert out.read_bytes() == plain.read_bytes(), (n, kind, warnings)
        assert annotated + cached == len(CACHE_TEXTS)
        assert not cached or len(warnings) <= annotated, (n, kind, warnings)  # what was not taken was reported
        assert not any("cannot be used" in w for w in warnings), warnings  # the folder is usable: a bad entry is one
        if kind < 5:  # bad entries: reported by key, dropped and recomputed; the next run takes them all
            assert (len(warnings), annotated) == (expected["bad"], expected["bad"] + expected["miss"]), (
                n, kind, expected, warnings)
            assert all(re.search(r"bad annotation cache entry [0-9a-f]{12}\.\.\. \(.+\); dropped and recomputed$", w)
                       for w in warnings), warnings
            assert run(out, cache)[:2] == (0, len(CACHE_TEXTS)) and out.read_bytes() == plain.read_bytes()
        elif warnings and "damaged" in warnings[0]:
            assert file_digest(cache / FILE) == damaged  # the user's file: neither deleted nor rewritten
        reported += bool(warnings)
    assert reported > CACHE_CASES // 2
    assert file_digest(src) == before


SNAPSHOT_CASES = 28  # each of the 14 kinds leads two cases, joined by up to two others
BASE_SNAPSHOTS = sorted((FIXTURES / "annotations").glob("*.jsonl"))
ODD_NAMES = ("notes.txt", "export.csv", "snap.jsonl.bak", "snap.json~", "noext", "snap.jsonl.gz")


def json_export(rng: random.Random, snapshot: Path) -> str:
    """Label Studio's JSON export (a JSON array of tasks) of a JSON Lines snapshot, laid out as the UI might."""
    tasks = [json.loads(line) for line in snapshot.read_text(encoding="utf-8").splitlines()]
    text = json.dumps(tasks, indent=rng.choice([None, 2]), ensure_ascii=rng.random() < 0.5)
    return rng.choice(["", "\ufeff", "\n  "]) + text


def odd_snapshot(rng: random.Random, folder: Path, kind: int) -> tuple[str, str]:
    """Add one misnamed or odd entry to `folder`: (its name, what must happen: read, skip, list error or read error)."""
    base = rng.choice(BASE_SNAPSHOTS)
    lines = base.read_text(encoding="utf-8").splitlines(keepends=True)
    if kind < 4:  # another name for a JSON Lines snapshot: downloaded twice, renamed, upper-case
        name = ["export.jsonl", "X.JSONL", "X (1).jsonl", "20220111T120000Z.JSONL"][kind]
        (folder / name).write_text("".join(lines), encoding="utf-8")
        return name, "read"
    if kind < 6:  # Label Studio's own JSON export, as downloaded or renamed to its time
        name = ["export.json", "20220113T000000Z.json"][kind - 4]
        (folder / name).write_text(json_export(rng, base), encoding="utf-8")
        return name, "read"
    if kind == 6:  # cut lines: a copy stopped mid-write
        cut = [line[: rng.randrange(1, len(line) - 1)] + "\n" if rng.random() < 0.5 else line for line in lines]
        cut[-1] = lines[-1][: rng.randrange(1, len(lines[-1]) - 1)]
        (folder / "cut.jsonl").write_text("".join(cut), encoding="utf-8")
        return "cut.jsonl", "read"
    if kind == 7:
        (folder / "empty.jsonl").write_bytes(b"")
        return "empty.jsonl", "read"
    if kind == 8:
        name = rng.choice([".hidden.jsonl", "README.txt", "readme.md", ".DS_Store"])
        (folder / name).write_bytes(rng.randbytes(50))
        return name, "skip"
    if kind == 9:
        (folder / "sub").mkdir()
        (folder / "sub" / base.name).write_text("".join(lines), encoding="utf-8")
        return "sub", "list error"
    if kind == 10:
        name = rng.choice(["20220101T000000Z.meta.json", "20220113T000000Z.meta.json"])
        (folder / name).write_text('{"server": "http://localhost:8080", "project": 1}\n', encoding="utf-8")
        return name, "list error"
    if kind == 11:
        name = rng.choice(ODD_NAMES)
        (folder / name).write_text("".join(lines), encoding="utf-8")
        return name, "list error"
    if kind == 12:  # an export cut short: not JSON, reported with its line
        text = json_export(rng, base).rstrip()
        (folder / "broken.json").write_text(text[: rng.randrange(1, len(text) - 1)], encoding="utf-8")
        return "broken.json", "read error"
    (folder / "latin.json").write_bytes(b"[" + json_export(rng, base).encode("latin-1", "replace")[1:] + b"\xe9\xff]")
    return "latin.json", "read error"


def snapshot_order(names: list[str]) -> list[str]:
    """README's order of the snapshots of annotations/: timestamped names by their time, then the rest by name."""
    timed = sorted((n for n in names if re.match(r"^\d{8}T\d{6}Z\.jsonl?$", n, re.IGNORECASE)),
                   key=lambda n: (n[:16].upper(), n))
    return timed + sorted(n for n in names if n not in timed)


def test_odd_snapshot_files_are_each_read_or_reported_by_name(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    params = lenient_params(tmp_path)
    pre = FIXTURES / "preannotated.jsonl"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    merge.main(pre, FIXTURES / "annotations", earlier / "labeled.jsonl", earlier / "report.json", params, RULES)
    gold_before = {r["id"] for r in map(loads, (earlier / "labeled.jsonl").read_text(encoding="utf-8").splitlines())
                   if r["status"] == "gold"}
    assert gold_before
    capsys.readouterr()
    rng = random.Random(SEED + 40)
    outcomes: dict[str, int] = {}
    for n in range(SNAPSHOT_CASES):
        case = tmp_path / f"case{n}"
        ann = case / "annotations"
        shutil.copytree(FIXTURES / "annotations", ann)
        shutil.copytree(earlier, case / "out")
        kinds = [n % 14, *rng.sample(range(14), rng.randrange(0, 3))]
        added = dict(odd_snapshot(rng, ann, kind) for kind in dict.fromkeys(kinds))
        inputs = {p: file_digest(p) for p in ann.rglob("*") if p.is_file()}
        out, rep = case / "out" / "labeled.jsonl", case / "out" / "report.json"
        kept = {p: file_digest(p) for p in (out, rep)}
        result, err = checked_run(lambda: merge.main(pre, ann, out, rep, params, RULES), capsys)  # noqa: B023
        assert "Traceback" not in err
        listing = sorted(name for name, what in added.items() if what == "list error")
        reading = snapshot_order([name for name, what in added.items() if what == "read error"])
        if listing or reading:
            assert isinstance(result, PipelineError) and result.exit_code == 3, (n, added, result)
            first = ann / (listing or reading)[0]
            pattern = rf"{re.escape(str(first))}:\d+: " if not listing and first.name == "broken.json" else \
                rf"{re.escape(str(first))}: "
            assert re.match(pattern, str(result)) and "\n" not in str(result), (added, str(result))
            assert {p: file_digest(p) for p in kept} == kept  # the earlier output and report are still there
        else:
            assert result is None, (n, added, result)
            report = json.loads(rep.read_text(encoding="utf-8"))
            names = [b.name for b in BASE_SNAPSHOTS] + [name for name, what in added.items() if what == "read"]
            assert [Path(s["path"]).name for s in report["snapshots"]] == snapshot_order(names), added
            if "cut.jsonl" in added:  # each cut line reported by its number
                cut = ann / "cut.jsonl"
                reported = skipped(err, "merge", *(p for p in inputs if p.parent == ann))[cut]
                broken = {i for i, line in enumerate(cut.read_text(encoding="utf-8").splitlines(), 1)
                          if not line.endswith("}")}
                assert broken and broken <= set(reported), (broken, reported)
            gold_now = {r["id"] for r in map(loads, out.read_text(encoding="utf-8").splitlines())
                        if r["status"] == "gold"}
            lost = {g["article_id"] for g in report["lost_gold"]}
            assert gold_before <= gold_now | lost, (added, gold_before - gold_now)  # never lost silently
        assert {p: file_digest(p) for p in inputs} == inputs
        for what in added.values():
            outcomes[what] = outcomes.get(what, 0) + 1
    assert set(outcomes) == {"read", "skip", "list error", "read error"}, outcomes


def test_a_misnamed_snapshot_from_the_command_line_exits_3_and_keeps_the_earlier_output(tmp_path: Path) -> None:
    ann, out = tmp_path / "annotations", tmp_path / "out"
    shutil.copytree(FIXTURES / "annotations", ann)
    out.mkdir()
    params = lenient_params(tmp_path)
    args = ["--preannotated", FIXTURES / "preannotated.jsonl", "--annotations", ann, "--output", out / "l.jsonl",
            "--report", out / "m.json", "--patterns", RULES[0], "--actors", RULES[1], "--lexicon", RULES[2],
            "--params", params]
    merge.main(FIXTURES / "preannotated.jsonl", ann, out / "l.jsonl", out / "m.json", params, RULES)  # the earlier run
    earlier = {p: file_digest(p) for p in out.iterdir()}
    (ann / "20220112T093000Z (1).jsonl.part").write_text("{}\n", encoding="utf-8")  # a download cut short
    inputs = {p: file_digest(p) for p in ann.iterdir()}
    run = cli("merge", *args)
    assert run.returncode == 3 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr == (f"error: {ann}/20220112T093000Z (1).jsonl.part: not a Label Studio snapshot (a .jsonl "
                          f"snapshot or Label Studio's .json export); move it out of {ann} or rename it\n")
    assert {p: file_digest(p) for p in out.iterdir()} == earlier and {p: file_digest(p) for p in ann.iterdir()} == inputs
