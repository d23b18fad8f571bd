"""Measures the stance pre-annotator on data in the SEESAW layout: triplet precision, recall and F1.

SEESAW (launchnlp/SEESAW, CC BY-NC-SA 4.0) gives sentence-split news articles with, per sentence,
triplets (source entity, POS/NEG, target entity) over a per-article list of canonical entity names.
Each article's sentences are joined with one space into one text, run through the real pre-annotator
(`pipeline.preannotate`: model, domain layer, actor links, stance rules) and its stances compared,
sentence by sentence, with SEESAW's triplets: POS = the lexicon's label of support (favor), NEG = its
label of opposition (against).

Only triplets whose two entities are SEESAW `People`, `Organization` or `GPE` count, on both sides.
A predicted stance is attributed to the SEESAW sentence holding its cue; each end is matched to the
article's canonical names by `match_name` (lenient, documented there); a stance whose holder or target
matches no listed entity of those types cannot be judged against SEESAW and is counted as `unmatched`,
not scored. Evaluation data only: nothing from SEESAW is copied into the project.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.common.errors import BadRecords, ConfigError, InputError
from pipeline.common.jsonl import read_json

if TYPE_CHECKING:
    from pipeline.stance.lexicon import Lexicon

STAGE = "evaluate-seesaw"
SCORED_TYPES = frozenset({"People", "Organization", "GPE"})
LABELS = {"POS": "favor", "NEG": "against"}  # for the shipped lexicon; `main` takes them from the lexicon used
SPLITS = ("train", "valid")

# Words dropped from a name before matching: determiners, honorifics and office titles.
TITLES = frozenset(
    ["the", "a", "an", "mr", "mrs", "ms", "miss", "dr", "sir", "president", "sen", "senator", "rep", "gov", "governor", "secretary", "minister", "gen", "adm", "rev"]
)
# Common names of entities whose SEESAW canonical name shares no word with them.
ALIASES: dict[str, tuple[str, ...]] = {
    "gop": ("republican party", "republicans"),
    "republicans": ("republican party",),
    "republican": ("republican party",),
    "democrats": ("democratic party",),
    "democrat": ("democratic party",),
    "dems": ("democratic party",),
    "us": ("united states", "us government", "america"),
    "u s": ("united states",),
    "usa": ("united states",),
    "america": ("united states",),
    "american": ("united states",),
    "americans": ("united states", "american people"),
    "washington": ("united states",),
    "uk": ("united kingdom",),
    "britain": ("united kingdom",),
    "british": ("united kingdom",),
    "white house": ("obama administration", "trump administration", "bush administration", "biden administration"),
    "kremlin": ("russia",),
    "moscow": ("russia",),
    "russian": ("russia",),
    "chinese": ("china",),
    "beijing": ("china",),
    "israeli": ("israel",),
    "iranian": ("iran",),
    "tehran": ("iran",),
    "supreme court": ("scotus",),
    "scotus": ("supreme court",),
    "fbi": ("federal bureau of investigation",),
    "cia": ("central intelligence agency",),
    "epa": ("environmental protection agency",),
    "nra": ("national rifle association",),
    "un": ("united nations",),
    "eu": ("european union",),
    "nato": ("north atlantic treaty organization",),
}


@dataclass(frozen=True)
class Article:
    """One SEESAW article: sentences (id, text), scored entity names, and gold triplets."""

    id: str
    split: str
    sentences: tuple[tuple[str, str], ...]
    names: tuple[str, ...]  # canonical names of People / Organization / GPE entities, in list order
    gold: frozenset[tuple[str, str, str, str]]  # (sentence id, holder name, label, target name)


@dataclass
class Tally:
    """Triplet counts of one split, and per rule of the predictions."""

    articles: int = 0
    gold: int = 0
    predicted: int = 0
    correct: int = 0
    unmatched: int = 0
    by_rule: Counter = field(default_factory=Counter)  # (rule, "tp"|"fp") -> count

    def scores(self) -> tuple[float, float, float]:
        """Precision, recall and F1 (0 when undefined)."""
        p = self.correct / self.predicted if self.predicted else 0.0
        r = self.correct / self.gold if self.gold else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


# --- reading the layout -------------------------------------------------------------------------


def _entity_type(entry: Sequence[Any]) -> str:
    """The entity type most annotators gave (ties: the first given)."""
    types = [t for t in entry[1] if isinstance(t, str)] if len(entry) > 1 and isinstance(entry[1], list) else []
    return Counter(types).most_common(1)[0][0] if types else ""


def seesaw_labels(lexicon: Lexicon) -> dict[str, str]:
    """SEESAW's sentiments as the lexicon's stance labels: POS = support, NEG = opposition."""
    if lexicon.positive_label is None or lexicon.negative_label is None:
        raise ConfigError(f"{lexicon.path}: SEESAW's POS/NEG need both a label of support and one of opposition "
                          f"(polarity), got {', '.join(lexicon.labels)}")
    return {"POS": lexicon.positive_label, "NEG": lexicon.negative_label}


def parse_article(
    article: dict, annotation: dict, split: str, article_id: str, labels: Mapping[str, str] = LABELS
) -> Article:
    """Build an Article from the JSON of its article and annotation files; `labels` maps POS/NEG to stance labels."""
    sentences = tuple((str(s["id"]), str(s["text"])) for s in article["text"])
    names = tuple(
        str(e[0]) for e in annotation.get("entity lists", []) if e and _entity_type(e) in SCORED_TYPES
    )
    allowed = set(names)
    gold = set()
    for sid, triplets in (annotation.get("sentence-level stances") or {}).items():
        for t in triplets:
            holder, target, label = t.get("subject"), t.get("object"), labels.get(t.get("sentiment"))
            if label and holder in allowed and target in allowed and holder != target:
                gold.add((str(sid), holder, label, target))
    return Article(article_id, split, sentences, names, frozenset(gold))


def load_articles(
    folder: Path, split: str | None = None, limit: int | None = None, labels: Mapping[str, str] = LABELS
) -> Iterator[Article]:
    """Articles of a SEESAW-layout folder (`articles/`, `annotations/`, `meta/`), sorted by file name."""
    folder = Path(folder)
    for sub in ("articles", "annotations", "meta"):
        if not (folder / sub).is_dir():
            raise ConfigError(f"{folder}: not a SEESAW folder (no {sub}/ inside)")
    bad = BadRecords(STAGE, max_share=0.1)
    total = count = 0
    for path in sorted((folder / "articles").glob("*.json")):
        if limit is not None and count >= limit:
            break
        total += 1
        story = path.stem.split("_DOCUMENT_")[0]
        try:
            meta = read_json(folder / "meta" / f"{story}.json", "SEESAW meta file")
            if split is not None and meta.get("Split") != split:
                continue
            article = parse_article(read_json(path, "SEESAW article"),
                                    read_json(folder / "annotations" / path.name, "SEESAW annotation file"),
                                    meta.get("Split"), path.stem, labels)
        except InputError as exc:
            bad.add(str(path), str(exc))
            continue
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            bad.add(str(path), f"unexpected layout ({type(exc).__name__}: {exc})")
            continue
        count += 1
        yield article
    bad.check(total)


# --- matching mentions to canonical names ---------------------------------------------------------


def _tokens(text: str) -> tuple[str, ...]:
    """Lower-case word tokens of a name, without possessive 's, dots and titles."""
    text = re.sub(r"['’]s\b", "", text.lower()).replace(".", "")
    words = re.findall(r"[a-z0-9]+", text)
    kept = tuple(w for w in words if w not in TITLES)
    return kept or tuple(words)


def _same_word(a: str, b: str) -> bool:
    """Words equal up to a short inflection ("Republicans"/"Republican", "American"/"America")."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return len(short) >= 4 and long.startswith(short) and len(long) - len(short) <= 3


def _contained(small: tuple[str, ...], big: tuple[str, ...]) -> bool:
    """Every word of `small` matches a word of `big`."""
    return bool(small) and all(any(_same_word(s, b) for b in big) for s in small)


def match_name(mention: str, names: Sequence[str]) -> str | None:
    """The canonical name a mention refers to, leniently, or None.

    In order: equal after dropping titles, case and punctuation ("Mr. Obama" = "Obama"); an alias
    ("GOP" -> "Republican Party", "Moscow" -> "Russia"); every mention word in the name ("Obama" in
    "Barack Obama", "Republicans" in "Republican Party" up to inflection) or every name word in the
    mention ("Senate Majority Leader Mitch McConnell"). Among several containing names, the shortest
    wins, then the first in SEESAW's list (main entities first).
    """
    mention_tokens = _tokens(mention)
    if not mention_tokens:
        return None
    table = [(name, _tokens(name)) for name in names]
    for name, tokens in table:
        if tokens == mention_tokens:
            return name
    for alias in ALIASES.get(" ".join(mention_tokens), ()):
        for name, tokens in table:
            if " ".join(tokens) == alias:
                return name
    found = [
        (len(tokens), i, name)
        for i, (name, tokens) in enumerate(table)
        if _contained(mention_tokens, tokens) or _contained(tokens, mention_tokens)
    ]
    return min(found)[2] if found else None


# --- running and scoring --------------------------------------------------------------------------


def to_record(article: Article) -> tuple[dict, list[tuple[int, int, str]]]:
    """The article as a pre-annotator record (sentences joined by one space) and its sentence spans."""
    spans, parts, offset = [], [], 0
    for sid, text in article.sentences:
        spans.append((offset, offset + len(text), sid))
        parts.append(text)
        offset += len(text) + 1
    return {"id": article.id, "text": " ".join(parts)}, spans


def predicted_triplets(
    record: dict, spans: Sequence[tuple[int, int, str]], names: Sequence[str]
) -> tuple[dict[tuple[str, str, str, str], str], int]:
    """Triplets (sentence id, holder, label, target) of an annotated record -> best rule; and unmatched count."""
    best: dict[tuple[str, str, str, str], tuple[float, str]] = {}
    unmatched = 0
    entities = record["entities"]
    for st in record["stances"]:
        cue = st["cue"]["start"]
        sid = next((s for start, end, s in spans if start <= cue < end), None)
        holder = match_name(entities[st["holder"]]["text"], names)
        target = match_name(entities[st["target"]]["text"], names)
        if sid is None or holder is None or target is None or holder == target:
            unmatched += 1
            continue
        key = (sid, holder, st["label"], target)
        if key not in best or st["score"] > best[key][0]:
            best[key] = (st["score"], st["rule"])
    return {k: rule for k, (_, rule) in best.items()}, unmatched


def score(pairs: Iterable[tuple[Article, dict, Sequence[tuple[int, int, str]]]]) -> dict[str, Tally]:
    """Tally each split over (article, annotated record, sentence spans) triples."""
    tallies: dict[str, Tally] = {}
    for article, record, spans in pairs:
        tally = tallies.setdefault(article.split, Tally())
        predicted, unmatched = predicted_triplets(record, spans, article.names)
        tally.articles += 1
        tally.gold += len(article.gold)
        tally.predicted += len(predicted)
        tally.unmatched += unmatched
        for triplet, rule in predicted.items():
            hit = triplet in article.gold
            tally.correct += hit
            tally.by_rule[(rule, "tp" if hit else "fp")] += 1
    return tallies


def errors(article: Article, record: dict, spans: Sequence[tuple[int, int, str]]) -> Iterator[dict]:
    """False positives and false negatives of one article, with their sentence, for error analysis."""
    predicted, _ = predicted_triplets(record, spans, article.names)
    text = dict(article.sentences)
    for triplet in sorted(set(predicted) | article.gold):
        if (triplet in predicted) != (triplet in article.gold):
            sid, holder, label, target = triplet
            yield {
                "article": article.id,
                "sentence": sid,
                "kind": "fp" if triplet in predicted else "fn",
                "rule": predicted.get(triplet),
                "triplet": [holder, label, target],
                "text": text.get(sid, ""),
            }


def report(tallies: dict[str, Tally], by_rule: bool) -> str:
    """The printed table: per split, P/R/F1 and counts; optionally per-rule precision."""
    lines = [f"{'split':<8}{'articles':>9}{'gold':>7}{'pred':>7}{'correct':>8}{'unmatched':>10}   P      R      F1"]
    for split in sorted(tallies, key=lambda s: (s not in SPLITS, SPLITS.index(s) if s in SPLITS else 0, s)):
        t = tallies[split]
        p, r, f = t.scores()
        lines.append(
            f"{split:<8}{t.articles:>9}{t.gold:>7}{t.predicted:>7}{t.correct:>8}{t.unmatched:>10}"
            f"   {p:.3f}  {r:.3f}  {f:.3f}"
        )
    if by_rule:
        lines.append(f"{'rule':<18}{'split':<8}{'tp':>5}{'fp':>6}  precision")
        for split, t in sorted(tallies.items()):
            for rule in sorted({r for r, _ in t.by_rule}):
                tp, fp = t.by_rule[(rule, "tp")], t.by_rule[(rule, "fp")]
                lines.append(f"{rule:<18}{split:<8}{tp:>5}{fp:>6}  {tp / (tp + fp):.3f}")
    return "\n".join(lines)


def main(
    folder: Path,
    params: Path,
    patterns: Path,
    actors: Path,
    lexicon: Path,
    split: str | None = None,
    limit: int | None = None,
    by_rule: bool = False,
    errors_out: Path | None = None,
) -> dict[str, Tally]:
    """Run the pre-annotator over a SEESAW-layout folder and print triplet P/R/F1 per split."""
    from pipeline import preannotate as pa
    from pipeline.common.config import section
    from pipeline.common.jsonl import write_jsonl
    from pipeline.stance.lexicon import load_lexicon

    if split is not None and split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    cfg = section(pa.Params, pa.STAGE, params)
    labels = seesaw_labels(load_lexicon(lexicon, labels=cfg.stance_labels))
    articles = list(load_articles(folder, split, limit, labels))
    if not articles:
        raise InputError(f"{folder}: no articles{f' in split {split}' if split else ''}")
    pre = pa.load(cfg, patterns, actors, lexicon)
    prepared = [(a, *to_record(a)) for a in articles]
    annotated = pa.preannotate((record for _, record, _ in prepared), pre)
    results = [(a, out, spans) for (a, _, spans), out in zip(prepared, annotated, strict=True)]
    tallies = score(results)
    print(f"{STAGE}: {folder}: {len(articles)} articles, rules {pre.provenance['rules_version']}", file=sys.stderr)
    print(report(tallies, by_rule))
    if errors_out is not None:
        write_jsonl(errors_out, (e for a, out, spans in results for e in errors(a, out, spans)))
    return tallies
