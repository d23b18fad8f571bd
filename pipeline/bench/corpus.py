"""A seed-like scraped corpus of any size for the scale benchmark: stories with realistic reprint clusters.

Each story is an original article and its reprints: the same text on another site with its furniture (share
widgets, an advertisement slot, a related-posts block), a changed sentence or a dropped last paragraph, and now
and then a verbatim copy (an exact duplicate). Cluster sizes follow a Pareto tail, as wire copy does: most stories
run once, a few run on dozens or hundreds of sites. Deterministic for a given seed, streamed to disk.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bench.preannotate import synthetic_corpus
from pipeline.common.jsonl import atomic_writer, dumps

SITES = ("apnews.com", "reuters.com", "example-daily.com", "winknews.com", "dailynation.today", "tass.com",
         "kyivindependent.com", "euronews.com", "aljazeera.com", "dw.com")
FURNITURE_HEAD = ("World News", "Share this article", "Advertisement")
FURNITURE_TAIL = ("Related Posts", "Ukraine talks stall again", "Kremlin denies invasion plans", "Leave a Reply")
PARETO_ALPHA = 2.0  # P(cluster >= k) = k^-2: three stories in four run once, one in a hundred on 10+ sites
EXACT_SHARE = 0.02  # reprints that are verbatim copies, dropped by ingest as exact duplicates
RECORDS_PER_FILE = 10_000  # corpus .jsonl files of this many records, like a crawl's daily dumps


@dataclass
class CorpusStats:
    """What was generated: records, stories and the size of the largest cluster."""

    records: int = 0
    stories: int = 0
    largest_cluster: int = 0
    files: list[Path] = field(default_factory=list)


def cluster_size(rng: random.Random, cap: int) -> int:
    """Articles in one story (the original and its reprints), Pareto-distributed, at most `cap`."""
    return min(cap, int(rng.paretovariate(PARETO_ALPHA)))


def _reprint(text: str, rng: random.Random, filler: str) -> str:
    """The text as another site runs it: furniture around it, one sentence rewritten or the last paragraph cut."""
    if rng.random() < EXACT_SHARE:
        return text
    paragraphs = text.split("\n\n")
    if len(paragraphs) > 3 and rng.random() < 0.4:
        paragraphs = paragraphs[:-1]
    else:
        k = rng.randrange(len(paragraphs))
        sentences = paragraphs[k].split(". ")
        sentences[rng.randrange(len(sentences))] = filler.rstrip(".")
        paragraphs[k] = ". ".join(sentences)
    head = rng.sample(FURNITURE_HEAD, rng.randint(0, 2))
    tail = list(FURNITURE_TAIL[: rng.randint(0, len(FURNITURE_TAIL))])
    return "\n\n".join([*head, *paragraphs, *tail])


def stories(n: int, seed: int = 13, sentences: tuple[int, int] = (36, 60)) -> Iterator[tuple[int, dict[str, str]]]:
    """`n` raw records (story number, record) with title, date, source and url; reprints follow their original."""
    rng = random.Random(seed)
    cap = max(1, n // 20)  # no single story is more than a twentieth of the corpus
    made = story = 0
    chunk: list[str] = []
    while made < n:
        if not chunk:  # texts in batches: synthetic_corpus is deterministic per (count, seed)
            chunk = synthetic_corpus(256, sentences=sentences, seed=seed * 1_000_003 + story)
        text = chunk.pop()
        filler = synthetic_corpus(1, sentences=(3, 3), seed=story)[0].split(". ")[0]
        day = 9 + story % 20
        for copy in range(min(cluster_size(rng, cap), n - made)):
            site = SITES[(story + copy) % len(SITES)]
            body = text if copy == 0 else _reprint(text, rng, filler)
            yield story, {
                "title": f"{text[: text.find(' ', 60)]} ({site})",
                "date": f"2022-01-{min(28, day + copy // 5):02d}",
                "source": site,
                "url": f"https://www.{site}/2022/01/{day:02d}/story-{story}-{copy}",
                "text": body,
            }
            made += 1
        story += 1


def write_corpus(folder: Path, n: int, seed: int = 13) -> CorpusStats:
    """Write `n` records as corpus .jsonl files of RECORDS_PER_FILE records into `folder`; what was written."""
    stats = CorpusStats()
    files = math.ceil(n / RECORDS_PER_FILE)
    gen = stories(n, seed)
    run = last = -1
    for f in range(files):
        path = folder / f"crawl-{f:04d}.jsonl"
        with atomic_writer(path) as out:
            for story, record in gen:
                if story != last:
                    stats.stories += 1
                    run, last = 0, story
                run += 1
                stats.largest_cluster = max(stats.largest_cluster, run)
                out.write(dumps(record) + "\n")
                stats.records += 1
                if stats.records % RECORDS_PER_FILE == 0:
                    break
        stats.files.append(path)
    return stats
