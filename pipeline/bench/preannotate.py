"""Benchmarks a stage beside the bare library on a generated corpus: throughputs and their ratio."""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pipeline.bench.memory import TreePeak
from pipeline.common.config import section
from pipeline.common.errors import ConfigError
from pipeline.common.jsonl import dumps
from pipeline.entities.annotator import COMPONENT, load_model

if TYPE_CHECKING:
    from pipeline.preannotate import Preannotator

STAGES = ("preannotate", "scale", "label-studio")  # scale: pipeline/bench/scale.py, run by the CLI

# Seed-like sentences: who said what about whom, in the register of the January 2022 security talks.
_TEMPLATES = (
    "{person} warned {gpe} that it would pay a heavy price if it attacked {gpe2}.",
    "{gpe} accused {org} of expanding eastward and ignoring its security concerns.",
    "“We will not abandon our principles,” {person} told reporters in {city} on {day}.",
    "{norp} officials said the talks in {city} had been frank but difficult.",
    "{person} said {gpe} supports the sovereignty and territorial integrity of {gpe2}.",
    "The meeting between {gpe} and {org} is scheduled for {day} in {city}.",
    "{org} foreign ministers rejected the demand that {gpe2} never join the alliance.",
    "{gpe} has massed about 100,000 troops near the border, according to {norp} intelligence.",
    "{person} criticised the sanctions imposed by {gpe} and called them counterproductive.",
    "Deputy Foreign Minister {person} and Deputy Secretary of State {person2} will lead the delegations.",
    "The {norp} delegation arrived in {city} on {day} evening ahead of the talks.",
    "{gpe} and {gpe2} agreed to continue the dialogue despite deep differences.",
    "Analysts expect more pressure from {gpe} on {gpe2} in the coming weeks.",
    "{person} praised the unity of {org} and thanked {gpe} for its support.",
)
_FILL = {
    "person": ("Antony Blinken", "Sergei Ryabkov", "Jens Stoltenberg", "Wendy Sherman", "Vladimir Putin",
               "Maria Zakharova", "Joe Biden", "Dmytro Kuleba", "Sergei Lavrov", "Liz Truss"),
    "gpe": ("Russia", "the United States", "Ukraine", "Moscow", "Washington", "Kiev", "Belarus", "Germany"),
    "org": ("NATO", "the European Union", "the OSCE", "the Kremlin", "the State Department"),
    "norp": ("Russian", "American", "Ukrainian", "Western", "British", "French"),
    "city": ("Geneva", "Brussels", "Vienna", "Minsk", "Paris"),
    "day": ("Monday", "Wednesday", "Thursday", "Friday"),
}


def synthetic_corpus(n: int, sentences: tuple[int, int] = (12, 24), seed: int = 13) -> list[str]:
    """`n` deterministic news-like texts of a few paragraphs each, from seed-like sentence templates."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        paragraphs = []
        for _ in range(rng.randint(*sentences) // 3):
            sents = []
            for _ in range(3):
                fill = {k: rng.choice(v) for k, v in _FILL.items()}
                fill |= {f"{k}2": rng.choice(v) for k, v in _FILL.items()}
                sents.append(rng.choice(_TEMPLATES).format(**fill))
            paragraphs.append(" ".join(s[0].upper() + s[1:] for s in sents))
        texts.append("\n\n".join(paragraphs))
    return texts


def _timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - start, time.process_time() - cpu


def _drain(items: Iterable[object]) -> None:
    for _ in items:
        pass


def bench_preannotate(
    docs: int,
    n_process: int,
    params: Path,
    patterns: Path,
    actors: Path,
    lexicon: Path,
    repeat: int = 3,
    out: TextIO = sys.stdout,
    stance_model: Path | None = None,
) -> list[dict[str, float]]:
    """Time the full preannotate stage (no cache) and bare `nlp.pipe` on the same texts; print and return rows.

    Each runs `repeat` times in turns (stage, bare, stage, bare, ...): a row shows median throughputs, the min /
    median / max of the per-turn ratios and the peak memory of this process and its spaCy processes, summed.
    """
    from pipeline import preannotate as stage

    cfg = section(stage.Params, stage.STAGE, params)
    texts = synthetic_corpus(docs)
    records = [{"id": f"bench-{i:06d}", "text": t} for i, t in enumerate(texts)]
    chars = sum(map(len, texts))
    bare = load_model(cfg.model)
    pre = stage.load(cfg, patterns, actors, lexicon, stance_model)
    _drain(bare.pipe(texts[:8]))  # warm-up: lazy initialisation stays out of the timings
    _drain(stage.preannotate(records[:8], pre))
    print(
        f"bench preannotate: {docs} docs, {chars} chars, model {cfg.model} {pre.provenance['model_version']}, "
        f"batch_size {cfg.batch_size}, cache off, {repeat} turn(s) each, stage then bare, stance model "
        f"{pre.provenance.get('stance_model', 'off (rules)')}; medians; tree MB = peak RSS of this process (both "
        f"pipelines loaded) and its spaCy processes, summed",
        file=out,
    )
    print(f"{'n_process':>9} {'bare docs/s':>12} {'bare chars/s':>13} {'stage docs/s':>13} {'stage chars/s':>14} "
          f"{'ratio min/med/max':>17} {'bare tree MB':>12} {'stage tree MB':>13}", file=out)
    rows = []
    with open(os.devnull, "w", encoding="utf-8") as sink:
        for k in sorted({1, n_process}):
            run = dataclasses.replace(pre, params=cfg.model_copy(update={"n_process": k}))
            runs: dict[str, list[tuple[float, float]]] = {"stage": [], "bare": []}
            tree = {"stage": 0.0, "bare": 0.0}
            for _ in range(repeat):
                turn = [
                    ("stage", lambda run=run: sink.writelines(dumps(r) + "\n" for r in stage.preannotate(records, run))),
                    ("bare", lambda k=k: _drain(bare.pipe(texts, batch_size=cfg.batch_size, n_process=k))),
                ]
                for name, fn in turn:
                    with TreePeak(os.getpid()) as peak:
                        runs[name].append(_timed(fn))
                    tree[name] = max(tree[name], peak.tree_mb)
            t_stage, c_stage = (statistics.median(x) for x in zip(*runs["stage"], strict=True))
            t_bare = statistics.median(wall for wall, _ in runs["bare"])
            ratios = [b[0] / s[0] for s, b in zip(runs["stage"], runs["bare"], strict=True)]
            row = {
                "n_process": k,
                "bare_docs_s": docs / t_bare,
                "bare_chars_s": chars / t_bare,
                "stage_docs_s": docs / t_stage,
                "stage_chars_s": chars / t_stage,
                "ratio_min": min(ratios),
                "ratio": statistics.median(ratios),
                "ratio_max": max(ratios),
                "cpu_ratio": statistics.median(b[1] / s[1] for s, b in zip(runs["stage"], runs["bare"], strict=True)),
                "stage_cpu_s": c_stage,
                "bare_tree_mb": tree["bare"],
                "stage_tree_mb": tree["stage"],
            }
            rows.append(row)
            spread = f"{row['ratio_min']:.2f}/{row['ratio']:.2f}/{row['ratio_max']:.2f}"
            print(f"{k:>9} {row['bare_docs_s']:>12.1f} {row['bare_chars_s']:>13.0f} {row['stage_docs_s']:>13.1f} "
                  f"{row['stage_chars_s']:>14.0f} {spread:>17} {tree['bare']:>12.0f} {tree['stage']:>13.0f}", file=out)
    # With one process all work is in this process, so CPU time is a steadier measure on a busy machine.
    print(f"ratio stage/bare, 1 process, median: wall {rows[0]['ratio']:.2f}, cpu {rows[0]['cpu_ratio']:.2f}", file=out)
    if len(rows) > 1:
        print(
            f"speed-up with {n_process} processes: bare {rows[-1]['bare_docs_s'] / rows[0]['bare_docs_s']:.2f}x, "
            f"stage {rows[-1]['stage_docs_s'] / rows[0]['stage_docs_s']:.2f}x",
            file=out,
        )
    own = rows[0]["component_cpu_s"] = _component_cpu(pre, COMPONENT, texts, repeat)
    print(f"{COMPONENT} alone (rules, stance candidates and model, on parsed docs): {own:.2f} CPU s, "
          f"{own / rows[0]['stage_cpu_s']:.1%} of the stage's CPU in 1 process", file=out)
    return rows


def _component_cpu(pre: Preannotator, name: str, texts: Sequence[str], repeat: int) -> float:
    """Least CPU seconds of `repeat` runs of the pipeline's component `name` over `texts` parsed without it."""
    with pre.nlp.select_pipes(disable=[name]):
        parsed = list(pre.nlp.pipe(texts, batch_size=pre.params.batch_size))
    component = pre.nlp.get_pipe(name)
    best = float("inf")
    for _ in range(repeat):
        docs = [doc.copy() for doc in parsed]  # the component writes into its doc: each run gets fresh ones
        start = time.process_time()
        _drain(map(component, docs))
        best = min(best, time.process_time() - start)
    return best


def main(
    stage: str, docs: int, n_process: int, repeat: int, params: Path, patterns: Path, actors: Path, lexicon: Path,
    tasks: int = 1000,
    stance_model: Path | None = None,
) -> None:
    """Run the benchmark of `stage` and print its throughputs."""
    if stage not in STAGES:
        raise ConfigError(f"no benchmark for stage {stage!r}; available: {', '.join(STAGES)}")
    if docs < 1 or n_process < 1 or repeat < 1 or tasks < 1:
        raise ConfigError("--docs, --tasks, --n-process and --repeat must be at least 1")
    if stage != "preannotate":
        raise ConfigError(f"the {stage} benchmark is run by `python -m pipeline bench {stage}`")
    bench_preannotate(docs, n_process, params, patterns, actors, lexicon, repeat=repeat, stance_model=stance_model)
