"""Runs the real pre-annotator over re3d documents and scores it (`evaluate-re3d`): rules alone and the model.

One spaCy parse per document serves every system: `runs` calls the annotator component's own steps (entity
layer, rule stances, then the model's stances), as `Annotator.annotate` does (a test checks the records
equal `pipeline.preannotate.preannotate`'s). Data, split and scoring are in `re3d`; the error analysis
(why gold stances were missed, what the false positives are) is for the tune part only.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.common.errors import ConfigError, InputError
from pipeline.research.re3d import (
    ENTITY_MODES,
    Re3dDoc,
    Span,
    load_documents,
    match_stances,
    overlap,
    predicted_stances,
    score_entities,
    score_stances,
    split,
    split_counts,
)

if TYPE_CHECKING:
    from spacy.tokens import Doc

    from pipeline.entities.loader import Preannotator

STAGE = "evaluate-re3d"
PART_CHOICES = ("tune", "heldout", "all")


@dataclass
class Run:
    """One document's record under each system (same parse, same entities), and the parse if kept."""

    doc: Re3dDoc
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # system -> record
    parse: Doc | None = None


def systems(pre: Preannotator) -> tuple[str, ...]:
    """The systems one parse of `pre` gives: the rules, and the model when `pre` has one."""
    from pipeline.entities.annotator import COMPONENT

    return ("rules", "model") if getattr(pre.nlp.get_pipe(COMPONENT), "stance_model", None) is not None else ("rules",)


def runs(pre: Preannotator, docs: Sequence[Re3dDoc], keep_parse: bool = False) -> list[Run]:
    """Parse each document once and build its record under each of `systems(pre)`."""
    from pipeline.entities.annotator import COMPONENT, Annotator, sentence_spans
    from pipeline.stance.finder import model_stances

    annotator = pre.nlp.get_pipe(COMPONENT)
    assert isinstance(annotator, Annotator)
    out = []
    with pre.nlp.select_pipes(disable=[COMPONENT]):
        for doc, parsed in zip(docs, pre.nlp.pipe((d.text for d in docs), batch_size=pre.params.batch_size), strict=True):
            text = parsed.text
            kept, entities = annotator.entity_layer(parsed, text)
            base = {"id": doc.id, "sentences": sentence_spans(parsed, text), "entities": entities}
            rules = annotator.rule_stances(parsed, text, kept)
            run = Run(doc, {"rules": {**base, "stances": rules}}, parsed if keep_parse else None)
            if (model := annotator.stance_model) is not None and annotator.stance_threshold is not None:
                stances = (model_stances(parsed, kept, rules, annotator.rules.lexicon, annotator.stance_ends, model,
                                         annotator.stance_threshold) if kept else rules)
                run.records["model"] = {**base, "stances": stances}
            out.append(run)
    return out


def records(pre: Preannotator, docs: Sequence[Re3dDoc]) -> dict[str, list[dict[str, Any]]]:
    """Per system of `pre` (rules; model when it has one), the predicted records of `docs` in order, from one parse."""
    done = runs(pre, docs)
    return {system: [r.records[system] for r in done] for system in systems(pre)}


def score(docs: Sequence[Re3dDoc], recs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stance scores (overlap strict first; unlabelled and head variants) and entity scores of records of `docs`."""
    pairs = list(zip(docs, recs, strict=True))
    return {
        "docs": len(docs),
        "stances": score_stances(pairs, "overlap", True).as_dict(),
        "stances_unlabelled": score_stances(pairs, "overlap", False).as_dict(),
        "stances_head": score_stances(pairs, "head", True).as_dict(),
        "entities": {mode: score_entities(pairs, mode) for mode in ENTITY_MODES},
    }


def evaluate(pre: Preannotator, docs: Sequence[Re3dDoc]) -> dict[str, Any]:
    """Scores of one loaded pre-annotator as configured (its model when it has one, else the rules) on `docs`."""
    recs = records(pre, docs)
    return score(docs, recs["model"] if "model" in recs else recs["rules"])


def _sentence_of(record: Mapping[str, Any], char: int) -> int:
    """The index of the record's sentence holding a character offset (-1 if none)."""
    return next((k for k, s in enumerate(record["sentences"]) if s["start"] <= char < s["end"]), -1)


def _trigger(parsed: Doc | None, span: Span, cues: frozenset[str]) -> tuple[str, list[str]]:
    """Whether a trigger span holds a cue lemma ('cue', 'no cue', 'empty') and its content-word lemmas."""
    chars = parsed.char_span(span[0], span[1], alignment_mode="expand") if parsed is not None and span[1] > span[0] else None
    tokens = [t for t in chars or () if t.is_alpha]
    content = list(dict.fromkeys(t.lemma_.lower() for t in tokens if not t.is_stop and t.pos_ in ("VERB", "NOUN", "ADJ", "ADV")))
    kind = "empty" if not tokens else ("cue" if any(t.lemma_.lower() in cues for t in tokens) else "no cue")
    return kind, content


def missed(run: Run, system: str, cues: frozenset[str], ends: frozenset[str]) -> list[dict[str, Any]]:
    """One dict per gold stance of a document that `system` missed (overlap ends, strict): why, and trigger lemmas."""
    rec, doc = run.records[system], run.doc
    hit = set(match_stances(doc, rec, "overlap", True).values())
    unlabelled = set(match_stances(doc, rec, "overlap", False).values())
    preds = predicted_stances(rec)
    spans = [(e["start"], e["end"]) for e in rec["entities"] if e["label"] in ends]
    out = []
    for j, g in enumerate(doc.stances):
        if j in hit:
            continue
        found = sum(any(overlap(s, end) > 0 for s in spans) for end in (g.source, g.target))
        reverse = any(overlap(h, g.target) > 0 and overlap(t, g.source) > 0 for h, t, _ in preds)
        trigger, lemmas = _trigger(run.parse, g.trigger, cues)
        out.append({
            "reach": g.why_unreachable or "reachable", "found": ("none", "one", "both")[found],
            "same_sentence": _sentence_of(rec, g.source[0]) == _sentence_of(rec, g.target[0]),
            "near": "other label" if j in unlabelled else ("reverse direction" if reverse else "none"),
            "trigger": trigger, "label": g.label, "types": "+".join(g.types),
            "lemmas_in": [w for w in lemmas if w in cues], "lemmas_out": [w for w in lemmas if w not in cues],
        })
    return out


def false_positives(run: Run, system: str) -> list[dict[str, Any]]:
    """One dict per prediction of a document: tp or not, its rule, and for a false one what re3d says of the pair."""
    rec, doc = run.records[system], run.doc
    hit, unlabelled = match_stances(doc, rec, "overlap", True), match_stances(doc, rec, "overlap", False)
    gold_ents = [(g.begin, g.end) for g in doc.entities]
    out = []
    for i, ((h, t, _), s) in enumerate(zip(predicted_stances(rec), rec["stances"], strict=True)):
        other = sorted({r for a, b, r in doc.relations
                        if (overlap(h, a) > 0 and overlap(t, b) > 0) or (overlap(h, b) > 0 and overlap(t, a) > 0)})
        if i in hit:
            kind = ""
        elif i in unlabelled:
            kind = "pair right, label wrong"
        elif other:
            kind = "pair has another re3d relation: " + "+".join(other)
        elif all(any(overlap(x, e) > 0 for e in gold_ents) for x in (h, t)):
            kind = "no re3d relation, both ends re3d entities"
        else:
            kind = "no re3d relation, an end no re3d entity"
        out.append({"tp": i in hit, "rule": s["rule"], "kind": kind})
    return out


def _counts(counter: Counter[Any], top: int | None = None) -> str:
    """'key n, key n' of a counter, sorted by key (or its `top` most common)."""
    items = counter.most_common(top) if top else sorted(counter.items())
    return ", ".join(f"{k} {v}" for k, v in items)


def error_analysis(done: Sequence[Run], cues: frozenset[str], ends: Iterable[str], names: Sequence[str], top: int = 25) -> str:
    """Markdown counts of why gold stances were missed (overlap ends, strict) per system, and of false positives."""
    end_set, out = frozenset(ends), []
    for system in names:
        miss = [m for run in done for m in missed(run, system, cues, end_set)]
        preds = [p for run in done for p in false_positives(run, system)]
        out += [f"#### {system}: {len(miss)} missed gold stances (overlap ends, strict label)", "",
                "| reach | ends found as entities | trigger (cue lemma in lexicon?) | count |", "|---|---|---|---|"]
        cells = Counter((m["reach"], m["found"], m["trigger"]) for m in miss)
        out += [f"| {a} | {b} | {c} | {n} |" for (a, b, c), n in sorted(cells.items())]
        out.append("")
        for key in ("reach", "found", "trigger", "near", "label", "types"):
            out.append(f"- {key}: {_counts(Counter(m[key] for m in miss))}")
        out.append(f"- ends in one sentence: {_counts(Counter(str(m['same_sentence']) for m in miss))}")
        ready = Counter(str(m["trigger"] == "cue" and m["found"] == "both" and m["same_sentence"]) for m in miss)
        out.append(f"- cue in trigger, both ends found, one sentence: {_counts(ready)}")
        for name, group in (("all missed", miss), ("reachable missed", [m for m in miss if m["reach"] == "reachable"])):
            for side, key in (("in", "lemmas_in"), ("not in", "lemmas_out")):
                lemmas = Counter(w for m in group for w in m[key])
                out.append(f"- trigger lemmas {side} the lexicon, {name}: {_counts(lemmas, top)}")
        by_rule = Counter(f"{p['rule']} {'tp' if p['tp'] else 'fp'}" for p in preds)
        kinds = Counter(p["kind"] for p in preds if not p["tp"])
        out += [f"- predictions by rule: {_counts(by_rule)}",
                f"- false positives ({sum(kinds.values())}): {_counts(kinds, len(kinds))}", ""]
    return "\n".join(out)


def table(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The stance table (overlap ends, strict; head-match tp beside) and the entity table, as Markdown."""
    lines = ["| part | system | docs | gold | reach | pred | tp | P | R all | F1 all | R reach | F1 reach | tp head |",
             "|" + "---|" * 13]
    for part, by_system in results.items():
        for system, res in by_system.items():
            s = res["stances"]
            lines.append(f"| {part} | {system} | {s['docs']} | {s['gold']} | {s['reachable']} | {s['predicted']} | "
                         f"{s['tp']} | {s['p']:.3f} | {s['r_all']:.3f} | {s['f1_all']:.3f} | {s['r_reach']:.3f} | "
                         f"{s['f1_reach']:.3f} | {res['stances_head']['tp']} |")
    lines += ["", "| part | match | gold | pred | tp | P | R | F1 | R named |", "|" + "---|" * 9]
    for part, by_system in results.items():
        for mode, e in by_system["rules"]["entities"].items():  # the systems share the entities
            lines.append(f"| {part} | {mode} | {e['gold']} | {e['predicted']} | {e['tp']} | {e['p']:.3f} | "
                         f"{e['r']:.3f} | {e['f1']:.3f} | {e['r_named']:.3f} ({e['named_gold']}) |")
    return "\n".join(lines)


def main(root: Path, part: str, params: Path, patterns: Path, actors: Path, lexicon: Path,
         stance_model: Path | None = None, output: Path | None = None, errors: Path | None = None) -> dict[str, Any]:
    """Score rules alone and the stance model on a re3d part from one parse; print the tables; write JSON/errors."""
    from pipeline import preannotate as pa
    from pipeline.common.config import section
    from pipeline.common.jsonl import atomic_writer, write_json

    if part not in PART_CHOICES:
        raise ConfigError(f"--part must be one of {', '.join(PART_CHOICES)}, not {part!r}")
    if errors is not None and part != "tune":
        raise ConfigError(f"--errors is for --part tune only: an error analysis of {part} documents would tune on them")
    cfg = section(pa.Params, pa.STAGE, params)
    docs, report = load_documents(root)
    parts = split(docs)
    chosen = {**parts, "all": docs} if part == "all" else {part: parts[part]}
    todo = docs if part == "all" else parts[part]
    if not todo:
        raise InputError(f"{root}: no re3d documents in part {part}")
    pre = pa.load(cfg.model_copy(update={"stance_model": True}), patterns, actors, lexicon, stance_model)
    print(f"{STAGE}: {root}: {len(todo)} documents ({part}); {report}; model {pre.provenance.get('stance_model')}",
          file=sys.stderr)
    done = runs(pre, todo, keep_parse=errors is not None)
    by_id = {r.doc.id: r for r in done}
    results = {name: {system: score(group, [by_id[d.id].records[system] for d in group]) for system in systems(pre)}
               for name, group in chosen.items()}
    print(table(results))
    if output is not None:
        write_json(output, {"re3d": str(root), "part": part, "provenance": pre.provenance, "load": asdict(report),
                            "parts": {name: split_counts(group) for name, group in chosen.items()}, "results": results})
    if errors is not None:
        from pipeline.entities.annotator import COMPONENT, Annotator

        annotator = pre.nlp.get_pipe(COMPONENT)
        assert isinstance(annotator, Annotator)
        cues = frozenset(lemma for _, lemma in annotator.rules.lexicon.cues)
        with atomic_writer(errors) as out:
            out.write(error_analysis(done, cues, cfg.stance_ends, systems(pre)) + "\n")
    return results
