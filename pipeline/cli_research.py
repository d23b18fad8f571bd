"""Research commands of the one CLI: SEESAW and re3d evaluation, training the base and encoder stance models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_options import ActorsOpt, LexiconOpt, ParamsOpt, PatternsOpt, StanceModelOpt
from pipeline.common.errors import ConfigError

app = typer.Typer()

@app.command("train-seesaw")
def train_seesaw(
    folder: Annotated[Path, typer.Argument(help="A folder in the SEESAW layout (articles/, annotations/, meta/).")],
    output: Annotated[Path, typer.Option(help="The base model file.")] = Path("resources/stance_model/seesaw.json"),
    cv: Annotated[bool, typer.Option("--cv", help="Only print 5-fold cross-validation by story on train (C, threshold).")] = False,
    diagnose: Annotated[bool, typer.Option("--diagnose", help="Only print why train gold triplets are no candidate pair, by cause.")] = False,
    speakers: Annotated[bool, typer.Option("--speakers", help="With --cv/--diagnose: a quote's speaker nearby is a holder (opt-in mention).")] = False,
    nominals: Annotated[bool, typer.Option("--nominals", help="With --cv/--diagnose: 'the president' is an anaphor (opt-in mention).")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N train articles.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    patterns: Annotated[Path, typer.Option(help="Domain entity patterns.")] = Path("resources/entity_patterns.yaml"),
    actors: Annotated[Path, typer.Option(help="Geopolitical actors for linking.")] = Path("resources/actors.yaml"),
    lexicon: Annotated[Path, typer.Option(help="Stance cue lexicon.")] = Path("resources/stance_cues.yaml"),
) -> None:
    """Train the base stance model on SEESAW train (CC BY-NC-SA 4.0, and so are its weights) with the train: params."""
    mentions = frozenset(name for name, on in (("speakers", speakers), ("nominals", nominals)) if on)
    if diagnose:
        from pipeline.research import seesaw_diagnose

        seesaw_diagnose.main(folder=folder, params=params, patterns=patterns, actors=actors, lexicon=lexicon, limit=limit,
                             mentions=mentions)
        return
    from pipeline.research import seesaw_model

    seesaw_model.train_main(folder=folder, output=output, params=params, patterns=patterns, actors=actors,
                            lexicon=lexicon, cv=cv, limit=limit, mentions=mentions)


@app.command("evaluate-seesaw")
def evaluate_seesaw(
    folder: Annotated[Path, typer.Argument(help="A folder in the SEESAW layout (articles/, annotations/, meta/).")],
    params: ParamsOpt = Path("params.yaml"),
    patterns: Annotated[Path, typer.Option(help="Domain entity patterns.")] = Path("resources/entity_patterns.yaml"),
    actors: Annotated[Path, typer.Option(help="Geopolitical actors for linking.")] = Path("resources/actors.yaml"),
    lexicon: Annotated[Path, typer.Option(help="Stance cue lexicon.")] = Path("resources/stance_cues.yaml"),
    split: Annotated[str | None, typer.Option(help="Only this split (train or valid); default both, printed apart.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N articles (after the split filter).")] = None,
    by_rule: Annotated[bool, typer.Option("--by-rule", help="Also print the precision of each stance rule.")] = False,
    errors: Annotated[Path | None, typer.Option(help="Write false positives/negatives as JSONL here (keep it outside the repo).")] = None,
    model: Annotated[Path | None, typer.Option(help="Also score this stance model beside the rules, from one parse.")] = None,
    learning_curve: Annotated[Path | None, typer.Option(help="With --model: write the learning curve on valid here (JSON).")] = None,
) -> None:
    """Triplet precision, recall and F1 of the stance pre-annotator on SEESAW-layout data (POS=favor, NEG=against)."""
    from pipeline.research import seesaw

    if model is not None:
        from pipeline.research import seesaw_model

        seesaw_model.compare_main(folder=folder, model_path=model, params=params, patterns=patterns, actors=actors,
                                  lexicon=lexicon, curve=learning_curve, limit=limit)
        return
    if learning_curve is not None:
        raise ConfigError("--learning-curve needs --model")
    seesaw.main(folder=folder, params=params, patterns=patterns, actors=actors, lexicon=lexicon, split=split,
                limit=limit, by_rule=by_rule, errors_out=errors)


@app.command("evaluate-re3d")
def evaluate_re3d(
    re3d: Annotated[Path, typer.Option("--re3d", help="The re3d folder (one sub-folder per source).")] = Path("../shared/eval/re3d"),
    part: Annotated[str, typer.Option(help="tune, heldout or all (tune, heldout and both together).")] = "heldout",
    params: ParamsOpt = Path("params.yaml"),
    patterns: Annotated[Path, typer.Option(help="Domain entity patterns.")] = Path("resources/entity_patterns.yaml"),
    actors: Annotated[Path, typer.Option(help="Geopolitical actors for linking.")] = Path("resources/actors.yaml"),
    lexicon: Annotated[Path, typer.Option(help="Stance cue lexicon.")] = Path("resources/stance_cues.yaml"),
    stance_model: StanceModelOpt = None,
    output: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here.")] = None,
    errors: Annotated[Path | None, typer.Option(help="With --part tune only: write the error analysis (Markdown) here (keep it outside the repo).")] = None,
) -> None:
    """Entity and stance P/R/F1 of the pre-annotator on re3d, rules alone and the stance model, from one parse."""
    from pipeline.research import re3d_eval

    re3d_eval.main(root=re3d, part=part, params=params, patterns=patterns, actors=actors, lexicon=lexicon,
                   stance_model=stance_model, output=output, errors=errors)


@app.command("train-encoder")
def train_encoder(
    seesaw: Annotated[Path, typer.Option(help="A folder in the SEESAW layout.")] = Path("../shared/eval/seesaw"),
    re3d: Annotated[Path, typer.Option("--re3d", help="The re3d folder (its tune part is trained on).")] = Path("../shared/eval/re3d"),
    output: Annotated[Path, typer.Option(help="The model file.")] = Path("resources/stance_model/encoder.json"),
    c: Annotated[float, typer.Option(min=1e-6, help="Inverse L2 regularisation (chosen by cross-validation on re3d tune).")] = 0.03,
    re3d_weight: Annotated[int, typer.Option(min=0, help="Times each re3d tune pair counts against a SEESAW pair.")] = 20,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N SEESAW articles.")] = None,
    learning_curve: Annotated[Path | None, typer.Option(help="Also write SEESAW valid P/R/F1 by share of train stories here.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    patterns: PatternsOpt = Path("resources/entity_patterns.yaml"),
    actors: ActorsOpt = Path("resources/actors.yaml"),
    lexicon: LexiconOpt = Path("resources/stance_cues.yaml"),
) -> None:
    """Train the encoder stance model (pair features + all-MiniLM-L6-v2 vectors) on SEESAW train and re3d tune."""
    from pipeline.research import encoder_model

    encoder_model.train_main(seesaw, re3d, output, params, patterns, actors, lexicon, c, re3d_weight, limit,
                             learning_curve)


@app.command("compare-stances")
def compare_stances(
    model: Annotated[list[Path] | None, typer.Option("--model", help="A stance model file to compare (repeatable).")] = None,
    re3d: Annotated[Path | None, typer.Option("--re3d", help="The re3d folder (its held-out part is scored).")] = Path("../shared/eval/re3d"),
    gold: Annotated[Path | None, typer.Option("--gold", help="The seed gold folder.")] = Path("gold"),
    articles: Annotated[Path | None, typer.Option(help="The cleaned articles the gold quotes (data/articles/).")] = Path("data/articles"),
    seesaw: Annotated[Path | None, typer.Option(help="A folder in the SEESAW layout (valid is scored).")] = Path("../shared/eval/seesaw"),
    output: Annotated[Path | None, typer.Option(help="Also write the table as JSON here.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N SEESAW valid articles.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    patterns: PatternsOpt = Path("resources/entity_patterns.yaml"),
    actors: ActorsOpt = Path("resources/actors.yaml"),
    lexicon: LexiconOpt = Path("resources/stance_cues.yaml"),
) -> None:
    """One table: stance P/R/F1 of the rules and each model on re3d heldout, the seed gold and SEESAW valid."""
    from pipeline.research import stance_table

    def present(path: Path | None) -> Path | None:
        return path if path is not None and path.exists() else None

    paths = stance_table.Paths(params, patterns, actors, lexicon, present(re3d), present(gold), present(articles),
                               present(seesaw))
    stance_table.main(model or [], paths, output, limit)
