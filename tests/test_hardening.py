"""Reproductions of the fault and fuzz audit (issue 15) that are not a stage's own topic: each ends in a
one-line error or a correct result, with the documented exit code."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipeline import merge, preannotate
from pipeline.common.config import MAX_TEXT_CHARS, section
from pipeline.common.contract import stage_config
from pipeline.common.errors import BadShareError, ConfigError, InputError, PipelineError
from pipeline.common.jsonl import loads
from pipeline.ingest import IngestParams
from pipeline.labelstudio import server as ls_server
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.preannotate import check_record

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ROOT / "resources" / "boilerplate.yaml"
FIXTURES = Path(__file__).parent / "fixtures" / "publish"
BODY = "Foreign ministers met in Geneva on Monday to discuss the ceasefire and the exchange of prisoners."


def ingest_params(folder: Path, **changes: Any) -> Path:
    """A params.yaml with an `ingest:` section, lenient about bad records unless `changes` say otherwise."""
    values = {"language": "en", "max_article_bytes": 2_000_000, "min_text_chars": 20, "near_duplicate_threshold": 0.9,
              "shingle_size": 5, "max_bad_share": 1.0, "n_workers": 1, "shard_size": 2000, "records_per_shard": 10000,
              **changes}
    path = folder / "params.yaml"
    path.write_text("ingest:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
    return path


def run_ingest(corpus: Path, out: Path, **changes: Any) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ingest` on `corpus`, as a user runs it."""
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "ingest", "--corpus", str(corpus), "--output", str(out / "articles.jsonl"),
         "--report", str(out / "report.json"), "--patterns", str(PATTERNS),
         "--params", str(ingest_params(out, **changes))],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )


def outputs(out: Path) -> tuple[list[dict], dict]:
    """The articles and the report an ingest run wrote into `out`."""
    articles = [loads(line) for line in (out / "articles.jsonl").read_text(encoding="utf-8").splitlines()]
    return articles, json.loads((out / "report.json").read_text(encoding="utf-8"))


# -- item 5 and 7: URLs ---------------------------------------------------------------------------


def test_unusable_credentialled_and_non_http_urls_never_crash_ingest_nor_reach_the_output(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    urls = ["http://[", "https://[::1", "https://user:s3cr3t@example.com/a/b?x=1", "javascript:alert(1)",
            "ftp://example.com/file", "https://example.com:99999/", "https://www.example.org/2024/03/01/story"]
    (corpus / "feed.jsonl").write_text(
        "".join(json.dumps({"text": f"{BODY} Item {i}.", "url": u}) + "\n" for i, u in enumerate(urls)), encoding="utf-8")
    run = run_ingest(corpus, tmp_path / "out")
    assert run.returncode == 0, run.stderr
    articles, report = outputs(tmp_path / "out")
    assert [a["url"] for a in articles] == [None, None, "https://example.com/a/b?x=1", None, None, None, urls[-1]]
    assert articles[2]["source"] == "example.com" and articles[-1]["date"] == "2024-03-01"
    warnings = {w["where"].rsplit(":", 1)[1]: w["warning"] for w in report["metadata_warnings"]}
    assert warnings == {
        "1": "url dropped: not a valid URL (Invalid IPv6 URL)", "2": "url dropped: not a valid URL (Invalid IPv6 URL)",
        "3": "url: credentials (user:password@) removed", "4": "url dropped: scheme 'javascript' is not http or https",
        "5": "url dropped: scheme 'ftp' is not http or https",
        "6": "url dropped: not a valid URL (Port out of range 0-65535)",
    }
    for path in (tmp_path / "out" / "articles.jsonl", tmp_path / "out" / "report.json"):
        assert "s3cr3t" not in path.read_text(encoding="utf-8")


# -- item 5: a file name that is not UTF-8; item 7: entries that are not files ----------------------


def test_a_non_utf8_file_name_is_one_bad_record_and_special_entries_are_listed(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "ok.txt").write_text(BODY, encoding="utf-8")
    try:
        (corpus / os.fsdecode(b"caf\xe9.txt")).write_text(BODY + " Again.", encoding="utf-8")
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    os.mkfifo(corpus / "pipe.txt")
    (corpus / "gone.txt").symlink_to(corpus / "missing.txt")
    (corpus / "loop_a.txt").symlink_to(corpus / "loop_b.txt")
    (corpus / "loop_b.txt").symlink_to(corpus / "loop_a.txt")
    (corpus / "folder_link").symlink_to(corpus / "sub")
    before = sorted(p.name for p in corpus.iterdir())
    run = run_ingest(corpus, tmp_path / "out")  # a FIFO read would block for ever: the timeout guards that too
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    articles, report = outputs(tmp_path / "out")
    assert [a["source_file"] for a in articles] == ["ok.txt"]
    assert report["bad_records"] == [{"where": f"{corpus}/caf\\xe9.txt", "error": "file name is not valid UTF-8; rename the file"}]
    assert report["skipped_files"] == [
        {"path": "folder_link", "kind": "symlink to a folder (not followed)"},
        {"path": "gone.txt", "kind": "dangling symlink"},
        {"path": "loop_a.txt", "kind": "symlink loop"},
        {"path": "loop_b.txt", "kind": "symlink loop"},
        {"path": "pipe.txt", "kind": "FIFO (named pipe), not a file"},
    ]
    assert report["counts"]["skipped_files"] == 5
    assert f"ingest: warning {corpus}/pipe.txt: skipped, FIFO (named pipe), not a file" in run.stderr
    assert sorted(p.name for p in corpus.iterdir()) == before


# -- item 2: articles longer than spaCy's max_length ------------------------------------------------


def test_an_article_over_the_annotator_limit_is_rejected_at_ingest_with_its_reason(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    paragraph = (BODY + " ") * 10 + "\n\n"
    long_text = paragraph * (MAX_TEXT_CHARS // len(paragraph) + 200)  # about 1.2 million characters
    assert MAX_TEXT_CHARS < len(long_text) < 2_000_000
    (corpus / "a_long.txt").write_text(long_text, encoding="utf-8")
    (corpus / "b_short.txt").write_text(BODY, encoding="utf-8")
    run = run_ingest(corpus, tmp_path / "out")
    assert run.returncode == 0, run.stderr
    articles, report = outputs(tmp_path / "out")
    assert [a["source_file"] for a in articles] == ["b_short.txt"]
    [problem] = report["bad_records"]
    assert problem["where"] == str(corpus / "a_long.txt")
    assert problem["error"].startswith("text too long to annotate (") and problem["error"].endswith(
        f" > {MAX_TEXT_CHARS} characters after cleaning)")


def test_preannotate_refuses_an_over_long_text_as_one_bad_record() -> None:
    assert check_record({"id": "a", "text": "x" * MAX_TEXT_CHARS}) is None
    assert check_record({"id": "a", "text": "x" * (MAX_TEXT_CHARS + 1)}) == (
        f"'text' too long to annotate ({MAX_TEXT_CHARS + 1} > {MAX_TEXT_CHARS} characters)")


def test_the_model_accepts_what_the_record_check_lets_through() -> None:
    from pipeline.entities.annotator import load_model

    params = section(preannotate.Params, "preannotate", ROOT / "params.yaml")
    assert load_model(params.model).max_length == MAX_TEXT_CHARS


# -- item 5: a duplicate id in preannotate input ----------------------------------------------------


def test_a_duplicate_article_id_in_preannotate_input_is_one_bad_record(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [{"id": "a", "text": "Lavrov criticised NATO."}, {"id": "b", "text": "Biden met Zelensky."},
             {"id": "a", "text": "Putin warned NATO."}, {"id": 7, "text": "Macron spoke."}, {"id": "7", "text": "Again."}]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    before = src.read_bytes()
    params = tmp_path / "params.yaml"
    params.write_text(set_param((ROOT / "params.yaml").read_text(encoding="utf-8"), "preannotate", "max_bad_share", "0.5"),
                      encoding="utf-8")
    out = tmp_path / "out.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "preannotate", "--input", str(src), "--output", str(out), "--params", str(params)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert [r["id"] for r in map(loads, out.read_text(encoding="utf-8").splitlines())] == ["a", "b", 7]
    assert f"preannotate: skipped {src}:3: duplicate id 'a' (first on line 1)" in run.stderr
    assert f"preannotate: skipped {src}:5: duplicate id '7' (first on line 4)" in run.stderr
    assert "3 annotated" in run.stderr and "2 skipped" in run.stderr
    assert src.read_bytes() == before


def set_param(text: str, section_name: str, key: str, value: str) -> str:
    """`text` (a params.yaml) with `key` of the top-level section `section_name` set to `value` (YAML)."""
    lines, inside = text.splitlines(), False
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            inside = line.startswith(f"{section_name}:")
        elif inside and line.startswith(f"  {key}:"):
            lines[i] = f"  {key}: {value}"
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("line", "ok"), [(r'{"t": "\ud800 x"}', False), (r'{"\udfff": 1}', False),
                                        (r'{"t": "\ud83d\ude00"}', True), (r'{"t": "\\ud800"}', True)])
def test_a_lone_surrogate_escape_is_a_bad_line_not_a_crash_when_written(line: str, ok: bool) -> None:
    """json.loads accepts "\\ud800", which then cannot be written as UTF-8 by any later stage."""
    if ok:
        loads(line)
    else:
        with pytest.raises(ValueError, match=r"^invalid JSON: a lone UTF-16 surrogate escape"):
            loads(line)


# -- item 5: numbers that are not numbers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "yaml_text", "message"),
    [
        (merge.MergeConfig, "merge", ("merge:\n  seed: 7\n  splits: {train: .nan, validation: 0.2, test: 0.2}\n"
                                      "  max_bad_share: 0.5\n"), r"merge\.splits\.train: expected a finite number of at most 1e\+15, got nan"),
        (merge.MergeConfig, "merge", ("merge:\n  seed: 7\n  splits: {train: .inf, validation: 0.2, test: 0.2}\n"
                                      "  max_bad_share: 0.5\n"), r"merge\.splits\.train: expected a finite number of at most 1e\+15, got inf"),
        (IngestParams, "ingest", ("ingest:\n  language: en\n  max_article_bytes: 1e30\n  min_text_chars: 20\n"
                                  "  near_duplicate_threshold: 0.9\n  shingle_size: 5\n  max_bad_share: 0.1\n  n_workers: 1\n  shard_size: 2000\n  records_per_shard: 10000\n"),
         r"ingest\.max_article_bytes: expected int, got str '1e30'"),
        (IngestParams, "ingest", ("ingest:\n  language: en\n  max_article_bytes: 1000000000000000000000000000000\n"
                                  "  min_text_chars: 20\n  near_duplicate_threshold: 0.9\n  shingle_size: 5\n"
                                  "  max_bad_share: 0.1\n  n_workers: 1\n  shard_size: 2000\n  records_per_shard: 10000\n"),
         r"ingest\.max_article_bytes: must be in \[1, 9007199254740992\], got 1e\+30"),
    ],
)
def test_non_finite_and_huge_params_stop_at_start(tmp_path: Path, cls: type, name: str, yaml_text: str,
                                                  message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("preannotate:\n  entity_labels: [PERSON, GPE]\n  stance_labels: [against, favor]\n" + yaml_text)
    with pytest.raises(ConfigError, match=message):
        stage_config(cls, name, path) if cls is merge.MergeConfig else section(cls, name, path)


@pytest.mark.parametrize("value", ["1e30", "1.0e+30", "10000000000000000000000000000000"])
def test_a_huge_preannotate_batch_size_stops_at_start(tmp_path: Path, value: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(set_param((ROOT / "params.yaml").read_text(encoding="utf-8"), "preannotate", "batch_size", value),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"preannotate\.batch_size: (expected int|must be in \[1, 9007199254740992\])"):
        section(preannotate.Params, "preannotate", path)


def test_a_nan_lead_time_in_a_snapshot_is_one_bad_line_and_never_reaches_labeled(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture[str]) -> None:
    ann = tmp_path / "annotations"
    ann.mkdir()
    name = "20220112T093000Z.jsonl"
    lines = (FIXTURES / "annotations" / name).read_text(encoding="utf-8").splitlines(keepends=True)
    nan_line = next(i for i, line in enumerate(lines) if '"lead_time": 95.5' in line)
    lines[nan_line] = lines[nan_line].replace('"lead_time": 95.5', '"lead_time": NaN')
    (ann / name).write_text("".join(lines), encoding="utf-8")
    before = (ann / name).read_bytes()
    params = tmp_path / "params.yaml"
    params.write_text("preannotate:\n  entity_labels: [PERSON, NORP, ORG, GPE, LOC]\n  stance_labels: [against, favor]\n"
                      "merge:\n  seed: 7\n  splits: {train: 0.6, validation: 0.2, test: 0.2}\n  max_bad_share: 0.5\n")
    out = tmp_path / "labeled.jsonl"
    merge.main(FIXTURES / "preannotated.jsonl", ann, out, tmp_path / "report.json", params,
               (ROOT / "resources/entity_patterns.yaml", ROOT / "resources/actors.yaml", ROOT / "resources/stance_cues.yaml"))
    assert f"merge: skipped {ann / name}:{nan_line + 1}: invalid JSON: NaN is not a JSON number" in capsys.readouterr().err
    for line in out.read_text(encoding="utf-8").splitlines():
        loads(line)  # strict: a NaN anywhere would raise
    assert (ann / name).read_bytes() == before


# -- item 6: exit codes ----------------------------------------------------------------------------


def test_each_error_class_has_its_own_documented_exit_code() -> None:
    codes = {cls.__name__: cls.exit_code for cls in (ConfigError, InputError, BadShareError, PipelineError)}
    assert codes == {"ConfigError": 2, "InputError": 3, "BadShareError": 4, "PipelineError": 5}
    assert issubclass(LabelStudioError, PipelineError) and LabelStudioError.exit_code == 5
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in (1, 2, 3, 4, 5):
        assert f"\n| {code} | " in readme


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env=env)


def test_exit_codes_from_the_command_line(tmp_path: Path) -> None:
    missing = _cli("ingest", "--corpus", str(tmp_path / "none"), "--output", str(tmp_path / "a.jsonl"),
                   "--report", str(tmp_path / "r.json"), "--patterns", str(PATTERNS), "--params",
                   str(ingest_params(tmp_path)))
    assert (missing.returncode, missing.stderr) == (2, f"error: {tmp_path / 'none'}: corpus folder not found\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(BODY, encoding="utf-8")
    (corpus / "b.jsonl").write_text("{bad\n", encoding="utf-8")
    too_many = run_ingest(corpus, tmp_path / "out", max_bad_share=0.0)
    assert too_many.returncode == 4 and too_many.stderr.splitlines()[-1].startswith("error: ingest: 1 of 2 records")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    denied = _cli("ingest", "--corpus", str(corpus), "--output", str(blocker / "a.jsonl"), "--report",
                  str(tmp_path / "r.json"), "--patterns", str(PATTERNS), "--params", str(ingest_params(tmp_path)))
    assert denied.returncode == 2 and denied.stderr.startswith(f"error: {blocker}") and "Traceback" not in denied.stderr
    assert denied.stderr.count("\n") == 1 and blocker.read_text(encoding="utf-8") == "not a folder\n"


def test_a_label_studio_that_is_down_exits_5(tmp_path: Path) -> None:
    env = {**os.environ, "LABEL_STUDIO_URL": f"http://127.0.0.1:{_closed_port()}", "LABEL_STUDIO_API_KEY": "0" * 40}
    params = tmp_path / "params.yaml"  # no retries: the first refused connection is final
    params.write_text(set_param((ROOT / "params.yaml").read_text(encoding="utf-8"), "labelstudio", "retries", "0"),
                      encoding="utf-8")
    run = _cli("pull", "--output", str(tmp_path / "ann"), "--params", str(params), env=env)
    assert run.returncode == 5, run.stderr
    assert run.stderr.startswith("error: cannot connect to Label Studio") and run.stderr.count("\n") == 1
    assert not (tmp_path / "ann").exists() or not any((tmp_path / "ann").iterdir())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- item 7: the local server -----------------------------------------------------------------------


def test_free_port_keeps_a_port_left_in_time_wait() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert ls_server.free_port(port) != port  # a listening port is taken
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the server side closes first, as a crashed server's kernel does: its port goes to TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    assert ls_server.free_port(port) == port


def test_the_copied_server_log_holds_no_admin_identity_or_secret(tmp_path: Path) -> None:
    creds = ls_server.Credentials.new()
    log = tmp_path / "server.log"
    log.write_text(f"created user {creds.email} with password {creds.password}\nGET /api?token={creds.token} 200\n")
    copied = ls_server.redacted_log(log, creds).decode()
    assert all(s not in copied for s in (creds.email, creds.password, creds.token))
    assert copied == ("created user [admin-email redacted] with password [password redacted]\n"
                      "GET /api?token=[token redacted] 200\n")


def test_a_server_that_dies_at_start_up_is_quoted_redacted(tmp_path: Path) -> None:
    creds = ls_server.Credentials.new()
    log = tmp_path / "server.log"
    log.write_text(f"starting\nFATAL: cannot log in {creds.email} with token {creds.token}\n")
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    url = f"http://127.0.0.1:{ls_server.free_port()}"
    with pytest.raises(PipelineError) as err:
        ls_server.wait_healthy(url, 5, dead, log, creds)
    message = str(err.value)
    assert "exited with code 3" in message and "[token redacted]" in message and "[admin-email redacted]" in message
    assert creds.token not in message and creds.email not in message


@pytest.mark.integration
def test_the_local_server_data_folder_is_private(label_studio_server) -> None:
    assert label_studio_server.data_dir.stat().st_mode & 0o777 == 0o700
    assert label_studio_server.log.stat().st_mode & 0o077 == 0


# -- item 7: pull refuses a redirect to another host ------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    target = ""
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(f"{self.server.server_address[1]} {self.path}")
        if self.target:
            self.send_response(302)
            self.send_header("Location", self.target + self.path)
            self.end_headers()
        else:
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[tuple[str, str, list[str]]]:
    """Two real HTTP servers on loopback: the first redirects every GET to the second, under another host name."""
    seen: list[str] = []
    other_handler = type("Other", (_Handler,), {"target": "", "seen": seen})
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), other_handler)
    other_url = f"http://localhost:{other.server_address[1]}"
    first_handler = type("First", (_Handler,), {"target": other_url, "seen": seen})
    first = http.server.ThreadingHTTPServer(("127.0.0.1", 0), first_handler)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (first, other)]
    for t in threads:
        t.start()
    try:
        yield f"http://127.0.0.1:{first.server_address[1]}", other_url, seen
    finally:
        for s in (first, other):
            s.shutdown()
            s.server_close()


def test_every_call_refuses_a_redirect_to_another_host(redirecting: tuple[str, str, list[str]]) -> None:
    url, other_url, seen = redirecting
    api = LabelStudioAPI(url, "0" * 40, retries=0)
    assert len(api.session.hooks["response"]) == 1
    with pytest.raises(LabelStudioError, match=r"redirected /api/projects/1/ to another host"):
        api.call("listing", api.sdk.projects.with_raw_response.get, 1)  # an SDK call: the same session, same rule
    seen.clear()
    with pytest.raises(LabelStudioError, match=rf"^Label Studio at {url} redirected /api/projects to another host "
                                               rf"\({other_url}\); refusing to follow it$"):
        api.get("/api/projects", what="listing")
    assert seen == [f"{url.rsplit(':', 1)[1]} /api/projects"]  # the other host was never asked



def test_yaml_bombs_in_params_and_gold_are_one_line_errors(tmp_path: Path) -> None:
    """5,000 nested lists in params (a RecursionError traceback before) and in a gold file: one `error:` line each."""
    from pipeline.gold.files import GoldError, read_gold_files

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(BODY, encoding="utf-8")
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  language: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    result = _cli("ingest", "--corpus", str(corpus), "--output", str(tmp_path / "a.jsonl"), "--report",
                  str(tmp_path / "r.json"), "--patterns", str(PATTERNS), "--params", str(params))
    assert (result.returncode, result.stderr) == (
        ConfigError.exit_code, f"error: {params}:2: invalid YAML: nested deeper than 100 levels\n")
    gold = tmp_path / "gold.yaml"
    gold.write_text("source_file: a.txt\nsentences:\n" + "- " * 5000 + "x\n", encoding="utf-8")
    with pytest.raises(GoldError, match=rf"^{gold}:3: invalid YAML: nested deeper than 100 levels$"):
        read_gold_files(gold)


def test_label_studio_reimport_takes_the_latest_instant_and_skips_a_bad_stamp(tmp_path: Path) -> None:
    """The earlier work re-imported on a fresh server is each annotator's latest version by time, not by text."""
    from pipeline.labelstudio.reimport import latest_versions

    def ann(i: int, stamp: str) -> dict[str, Any]:
        return {"id": i, "completed_by": 1, "updated_at": stamp, "result": [], "was_cancelled": False}

    folder = tmp_path / "annotations"
    folder.mkdir()
    task = {"data": {"article_id": "a1", "text": BODY},
            "annotations": [ann(1, "2022-01-12T09:00:00Z"), ann(2, "2022-01-12T10:30:00+02:00"), ann(3, "soon")]}
    (folder / "20220112T093000Z.jsonl").write_text(json.dumps(task) + "\n", encoding="utf-8")
    assert [a["id"] for a in latest_versions(folder).values()] == [1]
