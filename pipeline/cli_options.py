"""Options shared by the commands of pipeline/cli.py and pipeline/cli_research.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read the stage's section from.")]
StanceModelOpt = Annotated[
    Path | None,
    typer.Option(help="Learned stance model (the train stage's output) for preannotate.stance_model; default: the "
                      "committed base model resources/stance_model/seesaw.json."),
]
PatternsOpt = Annotated[Path, typer.Option(help="Domain entity patterns.")]
ActorsOpt = Annotated[Path, typer.Option(help="Geopolitical actors for linking.")]
LexiconOpt = Annotated[Path, typer.Option(help="Stance cue lexicon.")]
