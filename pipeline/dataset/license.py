"""The dataset's LICENSE file: the publishers keep the copyright of the texts (research use only), the annotations are CC BY 4.0."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from pipeline.dataset.sections import stance_sources

LICENSE_FILE = "LICENSE"
# The Hub's `license_name` for `license: other` is an id: lowercase words joined by hyphens (dots for versions).
LICENSE_ID = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
ANNOTATIONS_LICENSE = "Creative Commons Attribution 4.0 International (CC BY 4.0), https://creativecommons.org/licenses/by/4.0/"


def license_problem(license: str, license_name: str) -> str | None:
    """Why the card's licence fields break the Hub's rules for a research-only dataset, or None."""
    if license != "other":
        return (f"license must be 'other' (the texts are copyrighted by their publishers, no open licence id "
                f"covers them), got {license!r}")
    if not LICENSE_ID.match(license_name):
        return (f"license_name must be a licence id: lowercase letters and digits joined by '-' "
                f"(e.g. geonews-research-only), got {license_name!r}")
    return None


def license_text(pretty_name: str, license_name: str, records: Collection[dict[str, Any]]) -> str:
    """The LICENSE file of the dataset folder: terms for the article texts and for the annotations."""
    sources = sorted({str(r["source"]) for r in records if r.get("source")})
    named = "".join(f"\n  - {s}" for s in sources) or "\n  - (no source recorded)"
    return f"""{pretty_name}: licence `{license_name}`

This dataset has two parts under different terms.

1. The article texts (the `text` and `title` of the `articles` configs, and every sentence, token and
   entity or stance span quoted from them in the other configs) are copyright of their publishers:{named}

   They are included for non-commercial research only: reading, annotating, training and evaluating
   research models, and quoting short excerpts in research publications. No other right to the texts is
   granted: do not redistribute them, in whole or in large part, or use them commercially. Each
   publisher's own terms apply in addition. A publisher who wants an article removed can ask the
   maintainers, and it is left out of the next version.

2. The annotations (entity spans, labels and actor links, stances, splits, annotator and agreement
   records, provenance, the figure and the card) are licensed under the
   {ANNOTATIONS_LICENSE}.
   Attribute them to the dataset ({pretty_name}) and its version.

The annotation guidelines shipped with the data are covered by the same licence as the annotations.
""" + model_terms(records)


def model_terms(records: Collection[dict[str, Any]]) -> str:
    """A third part when a learned stance model trained on CC BY-NC-SA data (SEESAW) proposed silver stances."""
    nc = [licence for licence in stance_sources(records) if "NC-SA" in licence]
    if not nc:
        return ""
    return f"""
3. Exception to 2: the stances of the silver configs (`*_silver`) were proposed by a stance model whose
   weights were trained on SEESAW ({"; ".join(nc)}). Those predictions are licensed under the
   Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International licence (CC BY-NC-SA 4.0),
   https://creativecommons.org/licenses/by-nc-sa/4.0/ : non-commercial use only, adaptations shared
   under the same licence, attribution to SEESAW and to this dataset.
"""
