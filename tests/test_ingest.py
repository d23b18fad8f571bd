"""Tests of the ingest stage: seed cleaning, metadata, paragraphs, duplicates, JSONL/CSV input and bad input."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import ingest
from pipeline.cleaning.article import Cleaned, Raw
from pipeline.cleaning.clean import clean, fix_text, normalise_line
from pipeline.cleaning.dates import parse_date, url_date
from pipeline.cleaning.dedup import NearDuplicates, Stories
from pipeline.cleaning.readers import read_corpus
from pipeline.cleaning.rules import Rules, load_rules
from pipeline.common.errors import BadRecords, ConfigError, InputError
from pipeline.common.provenance import file_digest, sha256_text
from pipeline.ingest import IngestParams, Report, link_stories

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
PATTERNS = ROOT / "resources" / "boilerplate.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ingest"
PARAMS = IngestParams(
    language="en",
    max_article_bytes=2_000_000,
    min_text_chars=200,
    near_duplicate_threshold=0.7,
    shingle_size=5,
    n_workers=1,
    shard_size=2000,
    records_per_shard=10000,
    max_bad_share=0.1,
)

# What each seed must come out as: title, date, url, furniture that must be gone, body that must survive.
SEEDS: dict[str, dict[str, Any]] = {
    "000_26aa7dedf783269b.txt": {
        "title": None,  # the first line is the lede itself, with a date label glued to its start
        "date": "2022-01-09",
        "url": None,
        "gone": ["date 2022-01-09"],
        "body": [
            "Negotiations between Russia and the United States on Russian proposals on security guarantees",
            "Serious Developments",
            "“We are ready to respond forcefully to a new Russian aggression.",
            "which allowed the former Soviet Union to control the Neighboring countries in Eastern Europe.",
        ],
        "removed": {"date_label"},
    },
    "001_7a33fa508537bb30.txt": {
        "title": "Russia wants sure US guarantees during the Geneva talks, and the West is coordinating to deter it "
        "from attacking Ukraine",
        "date": None,  # "Thursday" and "January 10" only: the publication date is not in the text
        "url": None,
        "gone": ["Related Post", "Leave a Reply", "Your email address will not be published", "Required fields"],
        "body": [
            "Moscow said on Thursday it would seek assured security guarantees from Washington",
            "In Moscow – and hours before the expected video call with his American counterpart – the Russian",
            "in addition to the situation in the region.",
        ],
        "removed": {"title", "related_block"},
    },
    "002_6d11aee6ff882e7b.txt": {
        "title": None,  # the page had no headline line: the first line after the date stamp is the lede
        "date": "2021-12-28",
        "url": None,
        "gone": ["Last Updated", "28/12/2021", "Award-winning problem solver", "Incurable introvert"],
        "body": [
            "The United States and Russia have agreed to hold talks next month",
            "“If we sit down to engage in dialogue, Russia can put its concerns on the table",
            "It is preparing a military offensive to retake separatist-held land in the eastern Donbass region.",
        ],
        "removed": {"updated_stamp", "author_bio"},
    },
    "003_cc4b65b17f3a6c20.txt": {
        "title": "The prospects are dim as the US and Russia prepare to meet in Ukraine",
        "date": "2022-01-09",  # from the source link https://www.winknews.com/2022/01/09/...
        "url": "https://www.winknews.com/2022/01/09/prospects-dim-as-us-russia-prepare-to-meet-over-ukraine/",
        "gone": [
            "blank",
            "Copyright 2022 Fort Myers Broadcasting Company",
            "https://",
            "Aila Slisco",
            "automatic aggregator",
            "admin@dailynationtoday.com",
            "Related Articles",
            "Back to top button",
        ],
        "body": [
            "WASHINGTON (AP)",
            "With the fate of Ukraine and the stability of post-Cold War Europe likely at stake",
            "“We have nowhere to turn,” Putin said last month",
            "have become almost cliché in Washington",
            (
                "On Sunday night, Ryabkov and Sherman will meet for a working dinner to discuss topics for the next "
                "day’s talks, a US official said."
            ),
        ],
        "removed": {"section_label", "title", "placeholder", "copyright"},
    },
    "004_d6b7efd2f01de790.txt": {
        "title": "Russia and NATO meet to seek common sense in the current standoff",
        "date": None,
        "url": None,
        "gone": ["You might also like", "More from author", "Comments are closed"],
        "body": [
            "The West and Russia are facing each other several times this week",
            "NATO fears that Russia is considering invading Ukraine.",
            (
                "In Ukraine, it monitors compliance with the ceasefire between pro-Russian separatists and the "
                "Ukrainian government army."
            ),
        ],
        "removed": {"title", "related_block"},
    },
}


def write_params(path: Path, **changes: Any) -> Path:
    """A params.yaml with an `ingest:` section (PARAMS with `changes`)."""
    section = {**PARAMS.model_dump(), **changes}
    path.write_text("ingest:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in section.items()), encoding="utf-8")
    return path


def run_stage(corpus: Path, out: Path, **changes: Any) -> tuple[list[dict], dict]:
    """Run the stage in-process on `corpus`; return the articles and the report."""
    out.mkdir(parents=True, exist_ok=True)
    ingest.main(
        corpus=corpus,
        output=out / "articles.jsonl",
        report=out / "report.json",
        patterns=PATTERNS,
        params=write_params(out / "params.yaml", **changes),
    )
    articles = [json.loads(line) for line in (out / "articles.jsonl").read_text(encoding="utf-8").splitlines()]
    return articles, json.loads((out / "report.json").read_text(encoding="utf-8"))


def run_cli(corpus: Path, out: Path, **changes: Any) -> subprocess.CompletedProcess[str]:
    """Run `python -m pipeline ingest` as a user would."""
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            sys.executable, "-m", "pipeline", "ingest",
            "--corpus", str(corpus),
            "--output", str(out / "articles.jsonl"),
            "--report", str(out / "report.json"),
            "--patterns", str(PATTERNS),
            "--params", str(write_params(out / "params.yaml", **changes)),
        ],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`."""
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(PATTERNS)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], dict, dict[str, str]]:
    """The seed corpus ingested once: articles by file name, the report, and the corpus hashes before the run."""
    before = hashes(CORPUS)
    articles, report = run_stage(CORPUS, tmp_path_factory.mktemp("seeds"))
    return {a["source_file"]: a for a in articles}, report, before


# ---------------------------------------------------------------- the five seeds


def test_seed_corpus_gives_five_articles_in_file_order(seeds) -> None:
    articles, report, _ = seeds
    assert list(articles) == sorted(SEEDS)
    assert report["counts"] | {"removed_lines": 0} == {
        "files": 5, "records": 5, "articles": 5, "bad_records": 0, "exact_duplicates": 0,
        "near_duplicate_pairs": 0, "removed_lines": 0, "decoding_fallbacks": 0, "ignored_files": 0,
        "skipped_files": 0,
    }  # fmt: skip
    for article in articles.values():
        assert list(article) == [
            "id", "title", "text", "date", "url", "source", "language", "paragraphs", "source_file", "story_id",
            "cluster_size",
        ]  # fmt: skip
        assert article["language"] == "en"
        assert article["story_id"] == article["id"] and article["cluster_size"] == 1


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_title_date_and_url(seeds, name: str) -> None:
    article, expected = seeds[0][name], SEEDS[name]
    assert article["title"] == expected["title"]
    assert article["date"] == expected["date"]
    assert article["url"] == expected["url"]
    assert article["source"] == ("winknews.com" if expected["url"] else None)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_furniture_gone_and_body_intact(seeds, name: str) -> None:
    article, report, _ = seeds
    article, expected = article[name], SEEDS[name]
    for furniture in expected["gone"]:
        assert furniture not in article["text"], furniture
    for sentence in expected["body"]:
        assert sentence in article["text"], sentence
    if expected["title"]:
        assert not article["text"].startswith(expected["title"])
    patterns = {r["pattern"] for r in report["removed_lines"] if r["file"] == name}
    assert patterns == expected["removed"]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_nothing_disappears_silently(seeds, name: str) -> None:
    """Every non-blank line of the raw file is in the text or listed in the report as removed."""
    article, report, _ = seeds
    paragraphs = [article[name]["text"][p["start"] : p["end"]] for p in article[name]["paragraphs"]]
    removed: dict[int, list[str]] = {}
    for r in report["removed_lines"]:
        if r["file"] == name:
            removed.setdefault(r["line"], []).append(r["text"])
    raw = fix_text((CORPUS / name).read_text(encoding="utf-8")).split("\n")
    for lineno, line in enumerate(raw, 1):
        rest = normalise_line(line)
        for text in removed.get(lineno, []):
            assert rest.startswith(text), (lineno, text)
            rest = rest[len(text) :].strip()
        assert not rest or rest in paragraphs, (lineno, rest)


def test_seed_quotes_dashes_and_unicode_kept(seeds) -> None:
    articles = seeds[0]
    text = articles["002_6d11aee6ff882e7b.txt"]["text"]
    assert "Ukraine’s interests" in text and "Lavrov added that – in a televised interview –" in text
    assert "“If we sit down" in text
    assert "cliché" in articles["003_cc4b65b17f3a6c20.txt"]["text"]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_paragraph_offsets(seeds, name: str) -> None:
    article = seeds[0][name]
    text, spans = article["text"], article["paragraphs"]
    paragraphs = [text[s["start"] : s["end"]] for s in spans]
    assert "\n\n".join(paragraphs) == text
    assert all(p and p == p.strip() and "\n" not in p and "  " not in p for p in paragraphs)
    assert all(a["end"] + 2 == b["start"] for a, b in itertools.pairwise(spans))


def test_seed_paragraph_structure(seeds) -> None:
    articles = seeds[0]
    # 002 has one paragraph per line and no blank lines; the others separate paragraphs by blank lines
    assert len(articles["002_6d11aee6ff882e7b.txt"]["paragraphs"]) == 20
    assert len(articles["004_d6b7efd2f01de790.txt"]["paragraphs"]) == 14


def test_ids_are_content_hashes_and_output_is_reproducible(seeds, tmp_path: Path) -> None:
    articles, report, _ = seeds
    for article in articles.values():
        assert article["id"] == sha256_text(article["text"])[:16]
    again, again_report = run_stage(CORPUS, tmp_path)
    assert {a["source_file"]: a for a in again} == articles
    assert again_report == report


def test_seed_corpus_not_modified(seeds) -> None:
    assert hashes(CORPUS) == seeds[2]


def test_report_lists_every_removed_line(seeds) -> None:
    report = seeds[1]
    assert report["counts"]["removed_lines"] == len(report["removed_lines"]) == sum(
        report["removed_lines_by_pattern"].values()
    )
    assert {
        "file": "001_7a33fa508537bb30.txt",
        "line": 51,
        "pattern": "related_block",
        "kind": "cut_after",
        "text": "Leave a Reply",
    } in report["removed_lines"]


# ---------------------------------------------------------------- cleaning rules on small texts


def article(rules: Rules, text: str, **fields: Any) -> Cleaned:
    return clean(Raw("t.txt", "t.txt", text, **fields), rules)


BODY = [
    f"Paragraph {i}: Russian and American diplomats met in Geneva to discuss security guarantees in Europe."
    for i in range(1, 9)
]


def test_normalisation_whitespace_nfc_mojibake(rules) -> None:
    text = "Title here\n\n  Ukraineâ€™s   border\u00a0 is\ttense — “quoted” -- e\u0301 \u200b \n\n\n\nSecond   para."
    cleaned = article(rules, text)
    assert cleaned.title == "Title here"
    assert cleaned.text == "Ukraine’s border is tense — “quoted” -- é\n\nSecond para."


def test_hard_wrapped_blocks_are_joined_and_single_lines_kept(rules) -> None:
    wrapped = article(rules, "Headline\n\nFirst line of a wrapped\nparagraph goes on.\n\nSecond paragraph.")
    assert wrapped.text == "First line of a wrapped paragraph goes on.\n\nSecond paragraph."
    lines = article(rules, "First paragraph.\nSecond paragraph.\nThird paragraph.")
    assert lines.title is None and len(lines.paragraphs) == 3


def test_furniture_in_the_body_is_guarded(rules) -> None:
    text = "\n\n".join(
        ["US", "Headline", *BODY[:2], "US", "Related Articles", "Copyright 2022 Example.", *BODY[2:], "Leave a Reply"]
    )
    cleaned = article(rules, text)
    gone = {(r.pattern, r.kind, r.text) for r in cleaned.removed}
    # mid-article cut_after lines only drop themselves; a section label is furniture only at the head
    assert ("related_block", "drop_line", "Related Articles") in gone
    assert ("copyright", "drop_line", "Copyright 2022 Example.") in gone
    assert ("section_label", "drop_line", "US") in gone and cleaned.text.count("\n\nUS\n\n") == 1
    assert all(sentence in cleaned.text for sentence in BODY)
    assert "Leave a Reply" not in cleaned.text


def test_furniture_words_inside_sentences_are_kept(rules) -> None:
    body = [
        "He told reporters to leave a reply on the table. Comments are closed, he joked, to laughter.",
        "Related Articles of the treaty were discussed at length by both delegations in Geneva.",
        "Creator. Award-winning problem solver. Music evangelist. Incurable introvert.",  # not in the tail
        *BODY,
    ]
    cleaned = article(rules, "\n\n".join(body))
    assert all(p in cleaned.text for p in body)
    tail = [
        "Copyright lawyers said the ruling would matter to publishers across Europe.",
        "Related Articles of the treaty were discussed at length by both delegations in Geneva.",
    ]
    cleaned = article(rules, "\n\n".join([*BODY, *tail]))
    assert cleaned.text.endswith("\n\n".join(tail)) and cleaned.removed == []


def test_trailing_block_is_cut(rules) -> None:
    text = "\n\n".join([*BODY, "Related Post", "Some other headline", "Another headline", "Leave a Reply"])
    cleaned = article(rules, text)
    assert cleaned.text.endswith(BODY[-1])
    assert [r.text for r in cleaned.removed if r.pattern == "related_block"] == [
        "Related Post", "Some other headline", "Another headline", "Leave a Reply",
    ]  # fmt: skip


def test_cut_after_never_takes_more_than_the_tail(rules) -> None:
    text = "\n\n".join([*BODY[:3], "You might also like", *BODY[3:]])
    cleaned = article(rules, text)
    assert all(sentence in cleaned.text for sentence in BODY)


@pytest.mark.parametrize(
    ("first", "date"),
    [
        ("date 2022-01-09 Moscow said on Thursday that talks would go ahead.", "2022-01-09"),
        ("28/12/2021–|Last Updated: 12/28/202111:04 AM (Mecca)", "2021-12-28"),
        ("January 9, 2022", "2022-01-09"),
        ("Published: 2022-01-10 09:30", "2022-01-10"),
        # as news sites print them; the hand-written patterns knew none of these
        ("Tuesday 12 March 2024 10:42 GMT", "2024-03-12"),
        ("Tuesday, 12 March 2024", "2024-03-12"),
        ("12 March 2024", "2024-03-12"),
        ("Mar. 12, 2024", "2024-03-12"),
        ("Tue, 12 Mar 2024 10:42:00 +0000", "2024-03-12"),
        ("2024-03-12T10:42:00+00:00", "2024-03-12"),
        ("Updated 12 March 2024 | 10:42 EST", "2024-03-12"),
        ("date 2022-13-45 Moscow said on Thursday that talks would go ahead.", None),  # not a calendar date
    ],
)
def test_date_lines(rules, first: str, date: str | None) -> None:
    cleaned = article(rules, "\n\n".join([first, *BODY]))
    assert cleaned.date == date
    if date:
        first_paragraph = "Moscow said on Thursday that talks would go ahead." if first.startswith("date") else BODY[0]
        assert cleaned.text.startswith(first_paragraph + "\n\n")
        assert [(r.kind, r.line) for r in cleaned.removed] == [("metadata", 1)]
    else:
        assert cleaned.text.startswith(first)


@pytest.mark.parametrize("first", ["12 Mrach 2024", "Tuesday 31 February 2024 10:42 GMT", "March 2024"])
def test_a_date_like_line_that_cannot_be_read_is_reported_and_not_glued_into_the_text(rules, first: str) -> None:
    cleaned = article(rules, "\n\n".join([first, *BODY]))
    assert cleaned.date is None
    assert cleaned.text.startswith(BODY[0] + "\n\n") and first not in cleaned.text
    assert [w for w in cleaned.warnings if first in w and w.startswith("line 1: date-like line")]


@pytest.mark.parametrize("line", ["2024 Olympics: the bid", "Moscow said on Thursday 12 March 2024 that talks went on.",
                                  "May 2024 be better for Geneva than it was"])
def test_a_sentence_with_a_date_is_not_a_date_line(rules, line: str) -> None:
    cleaned = article(rules, "\n\n".join([BODY[0], line, *BODY[1:]]))
    assert line in cleaned.text and not cleaned.warnings


@pytest.mark.parametrize(("field", "date"), [("Tuesday 12 March 2024 10:42 GMT", "2024-03-12"),
                                             ("Mar. 12, 2024", "2024-03-12"), ("12 March", None)])
def test_a_date_field_as_sites_print_it(rules, field: str, date: str | None) -> None:
    assert parse_date(field, rules) == date


def test_date_inside_url_and_fields_win(rules) -> None:
    body = "\n\n".join([*BODY, "https://news.example.com/world/2022/01/09/talks-open/"])
    assert article(rules, body).date == "2022-01-09"
    assert article(rules, body).url == "https://news.example.com/world/2022/01/09/talks-open/"
    assert article(rules, body).source == "news.example.com"
    fields = article(rules, body, date="2022-01-11T08:00:00Z", url="https://x.org/a", source="X")
    assert (fields.date, fields.url, fields.source) == ("2022-01-11", "https://x.org/a", "X")
    bad_date = article(rules, "date 2022-01-09 " + body, date="someday")
    assert bad_date.date == "2022-01-09" and "unparseable date field 'someday'" in bad_date.warnings[0]


@pytest.mark.parametrize(
    ("url", "date"),
    [
        ("https://www.winknews.com/2022/01/09/prospects-dim/", "2022-01-09"),
        ("https://news.example.com/world/2022/1/9/talks-open/", "2022-01-09"),
        ("https://news.example.com/2022/13/45/not-a-day/", None),
        ("https://news.example.com/world/talks-open/", None),
    ],
)
def test_url_date(rules, url: str, date: str | None) -> None:
    assert url_date(url, rules) == date


@pytest.mark.parametrize(
    ("value", "date"),
    [("2022-01-11T08:00:00Z", "2022-01-11"), ("January 9, 2022", "2022-01-09"), ("2022-02-30", None), ("someday", None)],
)
def test_parse_date(rules, value: str, date: str | None) -> None:
    assert parse_date(value, rules) == date


def test_title_field_wins_and_its_repeat_is_removed(rules) -> None:
    cleaned = article(rules, "\n\n".join(["Talks open in Geneva", *BODY]), title="Talks  open in Geneva")
    assert cleaned.title == "Talks open in Geneva" and cleaned.text.startswith(BODY[0])


# ---------------------------------------------------------------- duplicates


def test_exact_and_near_duplicates(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(FIXTURES / "wire.jsonl", corpus)
    shutil.copy(FIXTURES / "briefs.csv", corpus)
    articles, report = run_stage(corpus, tmp_path / "out")
    assert [a["source_file"] for a in articles] == ["briefs.csv:2", "briefs.csv:5", "wire.jsonl:1", "wire.jsonl:2"]
    first, reprint = articles[2], articles[3]
    # wire.jsonl:3 is wire.jsonl:1 with site furniture and extra whitespace: the same cleaned text
    assert report["exact_duplicates"] == [{"id": first["id"], "source_file": "wire.jsonl:3", "duplicate_of": "wire.jsonl:1"}]
    assert [p["id"] for p in report["near_duplicates"]] == [reprint["id"]]
    similarity = report["near_duplicates"][0]["similarity"]
    assert 0.7 <= similarity < 1
    assert reprint["story_id"] == first["id"] and first["story_id"] == first["id"]
    assert first["cluster_size"] == reprint["cluster_size"] == 2
    assert articles[0]["story_id"] == articles[0]["id"] and articles[0]["cluster_size"] == 1
    # with a threshold above their similarity they are separate stories
    articles, report = run_stage(corpus, tmp_path / "strict", near_duplicate_threshold=0.99)
    assert report["near_duplicates"] == [] and len({a["story_id"] for a in articles}) == 4


def test_near_duplicate_estimate_tracks_true_jaccard() -> None:
    index = NearDuplicates(0.5, 3)
    words = [f"w{i}" for i in range(400)]
    a, b = " ".join(words), " ".join(words[:300] + [f"x{i}" for i in range(100)])
    grams_a, grams_b = ({tuple(t.split()[i : i + 3]) for i in range(398)} for t in (a, b))
    true = len(grams_a & grams_b) / len(grams_a | grams_b)
    assert len(index.shingles(a)) == len(grams_a)
    assert index.add(a) == []
    [(j, estimate)] = index.add(b)
    assert j == 0 and abs(estimate - true) < 0.1


def test_story_ids_chain_to_the_first_article() -> None:
    stories = Stories()
    for _ in "abcde":
        stories.add()
    stories.union(0, 1)  # b reprints a
    stories.union(1, 2)  # c reprints b
    stories.union(4, 3)  # e reprints d
    stories.union(2, 4)  # then e also reprints c: the two stories are one, rooted at a
    linked = list(link_stories([{"id": x} for x in "abcde"], stories))
    assert [x["story_id"] for x in linked] == ["a"] * 5
    assert [x["cluster_size"] for x in linked] == [5] * 5


# ---------------------------------------------------------------- JSONL and CSV input


def test_jsonl_and_csv_fields(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(FIXTURES / "wire.jsonl", corpus)
    shutil.copy(FIXTURES / "briefs.csv", corpus)
    shutil.copy(CORPUS / "004_d6b7efd2f01de790.txt", corpus / "sub.txt")
    articles, _ = run_stage(corpus, tmp_path / "out")
    by_file = {a["source_file"]: a for a in articles}
    assert list(by_file) == ["briefs.csv:2", "briefs.csv:5", "sub.txt", "wire.jsonl:1", "wire.jsonl:2"]
    wire = by_file["wire.jsonl:1"]
    assert (wire["title"], wire["date"], wire["url"], wire["source"]) == (
        "US and Russia open Geneva talks on Ukraine", "2022-01-10",
        "https://apnews.com/article/russia-ukraine-geneva-talks", "Associated Press",
    )  # fmt: skip
    assert wire["text"].startswith("GENEVA (AP) — Senior diplomats")
    reprint = by_file["wire.jsonl:2"]
    assert (reprint["date"], reprint["source"]) == ("2022-01-10", "example-daily.com")
    brief = by_file["briefs.csv:2"]
    assert (brief["title"], brief["date"], brief["url"], brief["source"]) == (
        "Kuleba meets Stoltenberg in Brussels", "2022-01-10", None, "NATO press office",
    )  # fmt: skip
    assert len(brief["paragraphs"]) == 3  # one paragraph per line: the field has no blank lines
    second = by_file["briefs.csv:5"]
    assert second["title"] is None and second["date"] == "2022-01-13"
    assert second["text"].startswith("The OSCE Permanent Council met in Vienna")


# ---------------------------------------------------------------- bad input through the real CLI

GOOD = "\n\n".join(["Talks open in Geneva", *BODY])


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one of every kind of bad input, and a few good articles."""
    corpus = tmp_path_factory.mktemp("bad") / "corpus"
    corpus.mkdir()
    (corpus / "a_good.txt").write_text(GOOD, encoding="utf-8")
    (corpus / "b_empty.txt").write_bytes(b"")
    (corpus / "c_blank.txt").write_text("  \n\n \t\n", encoding="utf-8")
    (corpus / "d_binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (corpus / "e_big.txt").write_text(GOOD * 20, encoding="utf-8")
    (corpus / "f_cp1252.txt").write_bytes(GOOD.replace("Geneva", "Geneva\x92s").encode("latin-1"))
    (corpus / "g_furniture_only.txt").write_text("Leave a Reply\n\nComments are closed.\n", encoding="utf-8")
    lines = [
        json.dumps({"title": "Good", "text": GOOD.replace("Paragraph", "Para")}),
        '{"title": "broken", "text": "no closing quote}',
        "[1, 2, 3]",
        json.dumps({"title": "no text"}),
        json.dumps({"text": "   "}),
        json.dumps({"text": 42}),
        json.dumps({"text": GOOD * 20}),
        "",
        json.dumps({"text": GOOD.replace("Paragraph", "Graf"), "date": 20220109}),
    ]
    cp1252 = json.dumps({"text": GOOD.replace("Paragraph", "Section") + " Zakharova\u2019s"}, ensure_ascii=False)
    (corpus / "h_records.jsonl").write_bytes("\n".join(lines).encode() + b"\n" + cp1252.encode("cp1252") + b"\n")
    (corpus / "i_empty.jsonl").write_text("\n\n", encoding="utf-8")
    (corpus / "j_rows.csv").write_text(
        "title,text\n"
        f'Good,"{GOOD.replace("Paragraph", "Row")}"\n'
        "Extra,too,many,fields\n"
        "Missing,\n"
        'Unclosed,"this quote never ends\n',
        encoding="utf-8",
    )
    (corpus / "k_nocolumn.csv").write_text("title,body\nx,y\n", encoding="utf-8")
    (corpus / "l_binary.jsonl").write_bytes(b"\x00\x01\x02" * 10)
    (corpus / "m_utf16.txt").write_text(GOOD.replace("Paragraph", "Part"), encoding="utf-16")
    (corpus / "n_nested.jsonl").write_text("[" * 2000 + "]" * 2000 + "\n", encoding="utf-8")  # RecursionError in json
    (corpus / "o_numbers.jsonl").write_text('{"text": "x", "n": ' + "9" * 4400 + '}\n{"text": "x", "lead_time": NaN}\n',
                                            encoding="utf-8")  # Python's int-string limit; NaN is not JSON
    (corpus / "notes.md").write_text("not an article\n", encoding="utf-8")
    return corpus


BAD_CASES = [
    ("b_empty.txt", "empty file"),
    ("c_blank.txt", "empty file"),
    ("d_binary.txt", "binary file (contains NUL bytes)"),
    ("e_big.txt", "file too large"),
    ("f_cp1252.txt", "not valid UTF-8, and its encoding cannot be told with confidence"),
    ("g_furniture_only.txt", "text too short after cleaning (0 < min_text_chars 200)"),
    ("h_records.jsonl:2", "invalid JSON"),
    ("h_records.jsonl:3", "expected a JSON object, got list"),
    ("h_records.jsonl:4", "missing 'text' field"),
    ("h_records.jsonl:5", "empty 'text' field"),
    ("h_records.jsonl:6", "'text' must be a string, got int"),
    ("h_records.jsonl:7", "record too large"),
    ("h_records.jsonl:9", "'date' must be a string or null, got int"),
    ("h_records.jsonl:10", "not valid UTF-8, and its encoding cannot be told with confidence"),
    ("i_empty.jsonl", "empty file (no JSON Lines records)"),
    ("j_rows.csv:19", "expected 2 fields as in the header, got 4"),
    ("j_rows.csv:20", "missing 'text' field"),
    ("j_rows.csv:21", "malformed CSV"),
    ("k_nocolumn.csv:1", "no 'text' column in the header (columns: title, body)"),
    ("l_binary.jsonl", "binary file (contains NUL bytes)"),
    ("n_nested.jsonl:1", "invalid JSON: nested too deeply"),
    ("o_numbers.jsonl:1", "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
    ("o_numbers.jsonl:2", "invalid JSON: NaN is not a JSON number"),
]


@pytest.fixture(scope="module")
def lenient_run(bad_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """The CLI on the bad corpus with a threshold that lets it finish."""
    before = hashes(bad_corpus)
    out = tmp_path_factory.mktemp("lenient")
    result = run_cli(bad_corpus, out, max_article_bytes=5000, max_bad_share=1.0)
    return result, out, before


@pytest.mark.parametrize(("where", "message"), BAD_CASES)
def test_bad_input_is_reported_on_one_line(lenient_run, bad_corpus: Path, where: str, message: str) -> None:
    result = lenient_run[0]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"ingest: skipped {bad_corpus / where}: ")]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_bad_input_run_finishes_with_good_records(lenient_run, bad_corpus: Path) -> None:
    result, out, before = lenient_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert all(line.startswith("ingest: ") for line in result.stderr.splitlines() if line.strip())  # the bar clears with \r
    articles = [json.loads(line) for line in (out / "articles.jsonl").read_text(encoding="utf-8").splitlines()]
    # a few cp1252 accents read as well in cp1250 or cp852: too ambiguous to guess (bad records above)
    assert [a["source_file"] for a in articles] == ["a_good.txt", "h_records.jsonl:1", "j_rows.csv:2", "m_utf16.txt"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["bad_records"] == [
        {"where": str(bad_corpus / where), "error": error}
        for where, error in (problem.split(": ", 1) for problem in _skipped(result.stderr, bad_corpus))
    ]
    assert len(report["bad_records"]) == len(BAD_CASES)
    assert [(f["where"], f["encoding"]) for f in report["decoding_fallbacks"]] == [
        (str(bad_corpus / "m_utf16.txt"), "utf-16"),
    ]
    assert report["ignored_files"] == ["notes.md"]
    assert report["counts"]["records"] == len(BAD_CASES) + len(articles)
    assert hashes(bad_corpus) == before


def _skipped(stderr: str, corpus: Path) -> list[str]:
    prefix = "ingest: skipped "
    return [line[len(prefix) :].replace(f"{corpus}/", "", 1) for line in stderr.splitlines() if line.startswith(prefix)]


def test_too_many_bad_records_fail_the_stage(bad_corpus: Path, tmp_path: Path) -> None:
    result = run_cli(bad_corpus, tmp_path, max_article_bytes=5000, max_bad_share=0.5)
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: ingest: {len(BAD_CASES)} of {len(BAD_CASES) + 4} records are bad")
    assert f"first: {bad_corpus / 'b_empty.txt'}: empty file" in last
    assert not (tmp_path / "articles.jsonl").exists()
    assert (tmp_path / "report.json").exists()  # the report says what went wrong


def test_missing_corpus_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nowhere", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: corpus folder not found"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shingle_sizes": 5}, "ingest: unknown key(s) shingle_sizes"),
        ({"near_duplicate_threshold": "high"}, "ingest.near_duplicate_threshold: expected float, got str 'high'"),
        ({"near_duplicate_threshold": 1.5}, "ingest.near_duplicate_threshold: must be in (0, 1], got 1.5"),
        ({"near_duplicate_threshold": 0}, "ingest.near_duplicate_threshold: must be in (0, 1], got 0"),
        ({"language": "English"}, "ingest.language: 'English' is not a language code"),
    ],
)
def test_bad_params_are_config_errors(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ingest.main(
            corpus=CORPUS,
            output=tmp_path / "a.jsonl",
            report=tmp_path / "r.json",
            patterns=PATTERNS,
            params=write_params(tmp_path / "params.yaml", **changes),
        )


def test_bad_patterns_file_is_a_config_error(tmp_path: Path) -> None:
    patterns = tmp_path / "boilerplate.yaml"
    patterns.write_text(PATTERNS.read_text(encoding="utf-8").replace("'Leave a (?:Reply", "'Leave a ((?:Reply"))
    with pytest.raises(ConfigError, match="rule 'comment_widget': invalid regex"):
        load_rules(patterns)
    with pytest.raises(ConfigError, match="patterns file not found"):
        load_rules(tmp_path / "nope.yaml")


@dataclasses.dataclass
class Tally:
    """The least a reader needs to log into (the ReadLog protocol), with no stage behind it."""

    files: int = 0
    records: int = 0
    ignored_files: list[str] = dataclasses.field(default_factory=list)
    skipped_files: list[dict[str, str]] = dataclasses.field(default_factory=list)
    fallbacks: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def fallback(self, where: str, encoding: str, reason: str) -> None:
        self.fallbacks.append((Path(where).name, encoding))


@pytest.mark.parametrize(
    ("name", "data", "texts", "fallbacks"),
    [
        ("a.txt", b"Talks open in Geneva.", ["Talks open in Geneva."], []),
        ("a.txt", ("Министры встретились в Женеве. " * 3).encode("cp1251"), ["Министры встретились в Женеве. " * 3],
         [("a.txt", "cp1251")]),
        ("a.jsonl", b'{"text": "One."}\n\n{"text": "Two."}\n', ["One.", "Two."], []),
        ("a.csv", b"title,text\nT,Body.\n", ["Body."], []),
        ("a.md", b"# not a corpus format", [], []),
    ],
)
def test_readers_log_into_any_read_log(tmp_path: Path, name: str, data: bytes, texts: list[str], fallbacks: list) -> None:
    (tmp_path / name).write_bytes(data)
    (tmp_path / "b.txt").write_text("Second file.", encoding="utf-8")
    bad, tally = BadRecords("ingest", 1.0, quiet=True), Tally()
    raws = list(read_corpus(tmp_path, 1000, bad, tally))
    assert [r.text for r in raws] == [*texts, "Second file."] and len(bad) == 0
    assert (tally.files, tally.records) == (1 + bool(texts), len(texts) + 1)
    assert tally.ignored_files == ([] if texts else [name]) and tally.fallbacks == fallbacks


def test_empty_corpus_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    bad, report = BadRecords("ingest", 0.1, quiet=True), Report()
    with pytest.raises(InputError, match=r"no \.txt, \.jsonl, \.csv files to ingest"):
        list(read_corpus(tmp_path / "corpus", PARAMS.max_article_bytes, bad, report))


# ---------------------------------------------------------------- control characters, encodings, HTML (issue 29)

JA = "東京で外相会談が開かれ、停戦と捕虜交換について話し合った。ロシアとウクライナの代表も出席し、次回の日程を確認した。"
ZH = "外交部长周一在日内瓦举行会谈，讨论停火和交换战俘问题。俄罗斯和乌克兰代表出席，双方同意下周继续谈判。"


@pytest.mark.parametrize("separator", ["\v", "\f", "\u2028", "\u2029", "\x85", "\x1e", "\r"])
def test_line_separators_never_fuse_words(rules, separator: str) -> None:
    cleaned = article(rules, f"{BODY[0]}\n\nOfficials from Russia{separator}Moscow said the talks would go on.")
    assert "RussiaMoscow" not in cleaned.text
    assert "Russia\n" in cleaned.text or "Russia Moscow" in cleaned.text, cleaned.text
    assert "Moscow said" in cleaned.text


def test_joiners_are_kept_inside_words(rules) -> None:
    family, persian = "👩\u200d👩\u200d👧", "می\u200cخواهم"
    cleaned = article(rules, f"{BODY[0]} {family} and {persian} \u200dstay\u200c as written.")
    assert family in cleaned.text and persian in cleaned.text
    assert " stay as written." in cleaned.text  # a joiner beside a space joins nothing: dropped


def test_bidi_controls_are_stripped_from_metadata_and_overrides_from_the_body(rules) -> None:
    cleaned = article(rules, f"{BODY[0]}\n\nA quote: \u202egnoW\u202c and \u200fשלום\u200f.",
                      title="\u202eTalks\u202c in \u2067Geneva\u2069", source="\u202aWire\u202c",
                      date="\u200e2022-01-09\u200e")
    assert (cleaned.title, cleaned.source, cleaned.date) == ("Talks in Geneva", "Wire", "2022-01-09")
    assert "\u202e" not in cleaned.text and "gnoW\u202c" in cleaned.text  # the override is gone, nothing else
    assert "\u200fשלום\u200f" in cleaned.text  # marks stay in the body: they carry no spoofing


@pytest.mark.parametrize(("text", "encoding"), [(JA, "shift_jis"), (ZH, "gb18030")])
def test_east_asian_encodings_are_decoded_exactly(tmp_path: Path, text: str, encoding: str) -> None:
    (tmp_path / "a.txt").write_bytes(text.encode(encoding))
    bad, tally = BadRecords("ingest", 1.0, quiet=True), Tally()
    raws = list(read_corpus(tmp_path, 10_000, bad, tally))
    assert [r.text for r in raws] == [text] and len(bad) == 0 and len(tally.fallbacks) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(range(1, 256)) * 3, "encoding cannot be told with confidence"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)), "encoding cannot be told with confidence"),
        ("Café talks.".encode("cp1252"), "too few to tell the encoding"),  # cp1252 é or Cyrillic щ?
        (("Russian and American diplomats met in Geneva’s old town. " * 3).encode("cp1252"), "cp1250 or"),
        (b"\xff\xfe" + "odd".encode("utf-16-le")[:-1], "invalid UTF-16"),
    ],
)
def test_bytes_that_are_not_text_are_reported_never_accepted(tmp_path: Path, data: bytes, message: str) -> None:
    (tmp_path / "a.txt").write_bytes(data)
    bad, tally = BadRecords("ingest", 1.0, quiet=True), Tally()
    assert list(read_corpus(tmp_path, 10_000, bad, tally)) == []
    assert len(bad.problems) == 1 and message in bad.problems[0]["error"], bad.problems


def test_a_utf16_csv_and_jsonl_with_bom_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(f'title,text\nT,"{JA}"\nU,"Второй текст"\n', encoding="utf-16")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": ZH}, ensure_ascii=False) + "\n", encoding="utf-16")
    bad, tally = BadRecords("ingest", 1.0, quiet=True), Tally()
    raws = list(read_corpus(tmp_path, 10_000, bad, tally))
    assert [(r.source_file, r.title, r.text) for r in raws] == [
        ("a.csv:2", "T", JA), ("a.csv:3", "U", "Второй текст"), ("b.jsonl:1", None, ZH)]
    assert len(bad) == 0


def test_a_non_utf8_csv_line_that_cannot_be_decoded_stops_that_file_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"title,text\nT,Fine text.\nU,Caf\xe9 talks.\nV,Never read.\n")
    bad, tally = BadRecords("ingest", 1.0, quiet=True), Tally()
    assert [r.text for r in read_corpus(tmp_path, 10_000, bad, tally)] == ["Fine text."]
    assert [p["where"] for p in bad.problems] == [f"{tmp_path / 'a.csv'}:3"]
    assert "too few to tell the encoding; the rest of the file is not read" in bad.problems[0]["error"]


def test_a_csv_with_a_duplicate_text_column_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(f"text,title,Text\n\"{GOOD}\",T,other\n", encoding="utf-8")
    bad, tally = BadRecords("ingest", 1.0, quiet=True), Tally()
    assert list(read_corpus(tmp_path, 10_000, bad, tally)) == []
    assert bad.problems == [{"where": f"{tmp_path / 'a.csv'}:1",
                             "error": "column 'text' appears more than once in the header; which one holds the "
                                      "article is ambiguous"}]


HTML = ("<!DOCTYPE html>\n<html><head><title>Talks open in Geneva</title><style>p {color: red}</style>"
        "<script>var tracker = 1;</script></head><body><nav>Home | World</nav><article>"
        + "".join(f"<p>{p}</p>" for p in BODY[:4]) + "<p>Line one<br>line two</p></article></body></html>")


def test_an_html_document_is_reduced_to_its_text_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "page.txt").write_text(HTML, encoding="utf-8")
    (corpus / "feed.jsonl").write_text(json.dumps({"text": HTML.replace("Paragraph", "Part"), "title": "Given"}) + "\n")
    articles, report = run_stage(corpus, tmp_path / "out")
    by_file = {a["source_file"]: a for a in articles}
    page = by_file["page.txt"]
    assert page["title"] == "Talks open in Geneva" and by_file["feed.jsonl:1"]["title"] == "Given"
    assert page["text"] == "\n\n".join([*BODY[:4], "Line one\nline two"]).replace("\nline", " line")
    assert not any(s in a["text"] for a in articles for s in ("tracker", "color", "Home", "<"))
    assert report["html_extracted"] == [str(corpus / "feed.jsonl:1"), str(corpus / "page.txt")]
    assert report["counts"]["html_extracted"] == 2
    assert f"ingest: warning {corpus / 'page.txt'}: an HTML document; its text was extracted" in capsys.readouterr().err


def test_duplicate_articles_keep_the_first_in_corpus_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "b").mkdir(parents=True)
    (corpus / "b" / "copy.txt").write_text(GOOD, encoding="utf-8")
    (corpus / "a.jsonl").write_text(json.dumps({"text": GOOD}) + "\n" + json.dumps({"text": GOOD + "\n\n"}) + "\n")
    articles, report = run_stage(corpus, tmp_path / "out")
    assert [a["source_file"] for a in articles] == ["a.jsonl:1"]
    assert len({a["id"] for a in articles}) == len(articles)
    assert [(d["source_file"], d["duplicate_of"]) for d in report["exact_duplicates"]] == [
        ("a.jsonl:2", "a.jsonl:1"), ("b/copy.txt", "a.jsonl:1")]
    err = capsys.readouterr().err
    assert f"ingest: warning {corpus / 'b' / 'copy.txt'}: dropped, article {articles[0]['id']} has the same text as a.jsonl:1" in err
