"""The one command-line app, `python -m pipeline`: a thin typed layer over each stage's pure core.

Stage modules are imported inside each command so that `--help` and light commands stay fast.
Paths always come from the command line (dvc.yaml passes them); nothing here hard-codes a data path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import PipelineError

app = typer.Typer(
    name="pipeline",
    help="Pre-annotate geopolitical news with spaCy, round-trip it through Label Studio, publish a dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read the stage's section from.")]


@app.command()
def ingest(
    corpus: Annotated[Path, typer.Option(help="Folder of raw articles (.txt, .jsonl, .csv); never modified.")],
    output: Annotated[Path, typer.Option(help="Cleaned articles, one JSON object per line.")],
    report: Annotated[Path, typer.Option(help="JSON report: removed lines, duplicates, bad records.")],
    patterns: Annotated[Path, typer.Option(help="YAML file of boilerplate line patterns.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Clean raw scraped articles into data/articles.jsonl: metadata, boilerplate removal, duplicates."""
    from pipeline import ingest as stage

    stage.main(corpus=corpus, output=output, report=report, patterns=patterns, params=params)


def main() -> None:
    """Run the app, turning pipeline errors into one line on stderr and a non-zero exit."""
    try:
        app()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
