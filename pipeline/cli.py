"""The one command-line app, `python -m pipeline`: a thin typed layer over each stage's pure core.

Stage modules are imported inside each command so that `--help` and light commands stay fast.
dvc.yaml passes every path explicitly; the defaults of the options are the repository's layout, for
commands run by hand (`label-studio`, `push`, `pull`), and any of them can be overridden.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline import cli_research
from pipeline.cli_options import ParamsOpt, StanceModelOpt
from pipeline.common.errors import ConfigError, PipelineError

app = typer.Typer(
    name="pipeline",
    help="Pre-annotate geopolitical news with spaCy, round-trip it through Label Studio, publish a dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.command()
def ingest(
    corpus: Annotated[Path, typer.Option(help="Folder of raw articles (.txt, .jsonl, .csv); never modified.")],
    output: Annotated[Path, typer.Option(help="Cleaned articles: a shard folder (a path ending in .jsonl: one plain file).")],
    report: Annotated[Path, typer.Option(help="JSON report: removed lines, duplicates, bad records.")],
    patterns: Annotated[Path, typer.Option(help="YAML file of boilerplate line patterns.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Clean raw scraped articles into data/articles/: metadata, boilerplate removal, duplicates."""
    from pipeline import ingest as stage

    stage.main(corpus=corpus, output=output, report=report, patterns=patterns, params=params)


PreannotatedOpt = Annotated[Path, typer.Option("--input", help="Pre-annotated articles: a shard folder (data/preannotated/) or a JSON Lines file.")]
ReviewOpt = Annotated[bool, typer.Option("--review", help="The stance review queue's project, not the articles'.")]
GuidelinesOpt = Annotated[Path, typer.Option(help="Annotation guidelines (Markdown), shown as the project's instructions.")]


@app.command("label-studio")
def label_studio(
    input: PreannotatedOpt = Path("data/preannotated"),
    guidelines: GuidelinesOpt = Path("resources/guidelines.md"),
    data_dir: Annotated[Path, typer.Option(help="The local server's data (git-ignored).")] = Path(".labelstudio"),
    stop: Annotated[bool, typer.Option("--stop", help="Stop the local server instead.")] = False,
    params: ParamsOpt = Path("params.yaml"),
    annotations: Annotated[Path, typer.Option(help="Snapshots whose human work is imported (as its annotators').")]
    = Path("annotations"),
    port: Annotated[int | None, typer.Option(envvar="LABEL_STUDIO_PORT", min=1, max=65535,
                                             help="Port of the local server (default: labelstudio.server.port).")]
    = None,
    practice: Annotated[bool, typer.Option(
        "--practice", help="A separate practice project: the model's proposals, none of the human work.")] = False,
    review: Annotated[bool, typer.Option(
        "--review", help="Also create and fill the stance review queue's project (labelstudio.review).")] = False,
) -> None:
    """Start a local Label Studio (first run: admin + token into .env), set up the project, push the tasks,
    import the human annotations of annotations/ that the server lacks (--review: the review queue too)."""
    from pipeline.labelstudio import commands as stage

    if stop:
        stage.down_main(data_dir)
    else:
        stage.up_main(input=input, guidelines=guidelines, params=params, data_dir=data_dir, annotations=annotations,
                      port=port, practice=practice, review=review)


@app.command()
def push(
    input: PreannotatedOpt = Path("data/preannotated"),
    guidelines: GuidelinesOpt = Path("resources/guidelines.md"),
    params: ParamsOpt = Path("params.yaml"),
    break_lock: Annotated[bool, typer.Option(
        "--break-lock", help="Take the project's push lock even if another push holds it (one that died).")] = False,
    remove_duplicates: Annotated[bool, typer.Option(
        "--remove-duplicates", help="Delete tasks that repeat an article's task and have no human annotation.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the push report here (JSON).")] = None,
    review: ReviewOpt = False,
) -> None:
    """Push pre-annotated articles to Label Studio (LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY); only new ones are added.

    One push at a time per project (a lock on the server); tasks repeating an article are reported.
    With --review: the stance review queue (labelstudio.review), one task per proposed pair, least certain first."""
    from pipeline.labelstudio import commands as stage

    if review:
        from pipeline.labelstudio.review import push_review_main

        push_review_main(input=input, guidelines=guidelines, params=params, break_lock=break_lock)
        return
    stage.push_main(input=input, guidelines=guidelines, params=params, break_lock=break_lock,
                    remove_duplicates=remove_duplicates, report_path=report)


@app.command()
def pull(
    output: Annotated[Path, typer.Option(help="Folder of annotation snapshots.")] = Path("annotations"),
    articles: Annotated[Path | None, typer.Option(help="Current articles, to flag stale annotations.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the pull report here (JSON).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    review: ReviewOpt = False,
) -> None:
    """Pull every annotation from Label Studio into a new snapshot annotations/<UTC timestamp>.jsonl
    (with --review: the review queue's decisions into annotations/review/<UTC timestamp>.jsonl)."""
    from pipeline.labelstudio import commands as stage

    if review:
        from pipeline.labelstudio.review import pull_review_main

        pull_review_main(out_dir=output, params=params, articles=articles, report_path=report)
        return
    stage.pull_main(out_dir=output, params=params, articles=articles, report_path=report)


@app.command()
def adjudicate(
    report: Annotated[Path | None, typer.Option(help="Write the tasks to adjudicate here (JSON).")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Gather the tasks whose annotators disagree (labelstudio.adjudicate_below_f1) in the project's Adjudicate tab."""
    from pipeline.labelstudio import commands as stage

    stage.adjudicate_main(params=params, report_path=report)


@app.command("ls-config")
def ls_config(
    output: Annotated[Path | None, typer.Option(help="Write the XML here instead of stdout.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Print the Label Studio labeling config generated from params."""
    from pipeline.labelstudio import commands as stage

    stage.config_main(params=params, output=output)


@app.command("ls-import-gold")
def ls_import_gold(
    gold: Annotated[Path, typer.Option("--gold", help="Gold YAML folder (gold/).")] = Path("gold"),
    articles: Annotated[Path, typer.Option(help="Cleaned articles the gold quotes.")] = Path("data/articles"),
    input: PreannotatedOpt = Path("data/preannotated"),
    guidelines: GuidelinesOpt = Path("resources/guidelines.md"),
    output: Annotated[Path, typer.Option(help="Folder of annotation snapshots.")] = Path("annotations"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Round-trip the human gold through a throwaway Label Studio: push, annotate as gold@, pull a snapshot."""
    from pipeline.labelstudio import gold_import as stage

    stage.import_gold_main(gold=gold, articles=articles, input=input, guidelines=guidelines, out_dir=output,
                           params=params)


@app.command()
def preannotate(
    input: Annotated[Path, typer.Option("--input", help="Records with 'id' and 'text': a shard folder (data/articles/) or a JSON Lines file.")],
    output: Annotated[Path, typer.Option(help="The records plus sentences, entities, stances, provenance.")],
    params: ParamsOpt = Path("params.yaml"),
    cache: Annotated[Path | None, typer.Option(help="Annotation cache folder; omit to annotate everything.")] = None,
    patterns: Annotated[Path, typer.Option(help="Domain entity patterns.")] = Path("resources/entity_patterns.yaml"),
    actors: Annotated[Path, typer.Option(help="Geopolitical actors for linking.")] = Path("resources/actors.yaml"),
    lexicon: Annotated[Path, typer.Option(help="Stance cue lexicon.")] = Path("resources/stance_cues.yaml"),
    stance_model: StanceModelOpt = None,
) -> None:
    """Pre-annotate entities, actor links and stances with spaCy (data/articles/ -> data/preannotated/)."""
    from pipeline import preannotate as stage

    stage.main(
        input=input, output=output, params=params, cache=cache, patterns=patterns, actors=actors, lexicon=lexicon,
        stance_model=stance_model,
    )


@app.command()
def train(
    articles: Annotated[Path, typer.Option(help="Cleaned articles (data/articles/): text hashes and stories.")],
    annotations: Annotated[Path, typer.Option(help="Folder of Label Studio snapshots (human gold); none modified.")],
    output: Annotated[Path, typer.Option(help="The stance model file (JSON).")],
    report: Annotated[Path, typer.Option(help="JSON report: gold articles and pairs used, held out, model hash.")],
    base: Annotated[Path | None, typer.Option(help="Base model to stack on (with train.use_base).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    patterns: Annotated[Path, typer.Option(help="Domain entity patterns.")] = Path("resources/entity_patterns.yaml"),
    actors: Annotated[Path, typer.Option(help="Geopolitical actors for linking.")] = Path("resources/actors.yaml"),
    lexicon: Annotated[Path, typer.Option(help="Stance cue lexicon.")] = Path("resources/stance_cues.yaml"),
) -> None:
    """Train the stance model on the train-split human gold of annotations/ (optionally stacked on a base model)."""
    from pipeline import train as stage

    stage.main(articles=articles, annotations=annotations, output=output, report=report, params=params, base=base,
               patterns=patterns, actors=actors, lexicon=lexicon)


@app.command()
def bench(
    stage: Annotated[str, typer.Argument(help="What to benchmark: preannotate, scale (every stage, at --articles), or "
                                          "label-studio (push, no-op push, refresh, pull on a throwaway local server).")],
    docs: Annotated[int, typer.Option(help="Size of the generated corpus.")] = 500,
    tasks: Annotated[int, typer.Option(help="label-studio: tasks pushed, refreshed and pulled.")] = 1000,
    port: Annotated[int, typer.Option(help="label-studio: port of the throwaway server (0 or taken: any free port).")] = 0,
    n_process: Annotated[int, typer.Option("--n-process", help="Processes for the parallel run.")] = 2,
    repeat: Annotated[int, typer.Option(help="Turns of the stage and its baseline, run alternately; medians and min/median/max ratios.")] = 3,
    params: ParamsOpt = Path("params.yaml"),
    patterns: Annotated[Path, typer.Option(help="Domain entity patterns.")] = Path("resources/entity_patterns.yaml"),
    actors: Annotated[Path, typer.Option(help="Geopolitical actors for linking.")] = Path("resources/actors.yaml"),
    lexicon: Annotated[Path, typer.Option(help="Stance cue lexicon.")] = Path("resources/stance_cues.yaml"),
    articles: Annotated[list[int] | None, typer.Option(help="scale: raw articles generated (repeat for several sizes).")] = None,
    preannotate_articles: Annotated[int, typer.Option(help="scale: articles pre-annotated with the real model (0: none).")] = 200,
    max_publish_articles: Annotated[int, typer.Option(help="scale: run publish only up to this corpus size (raw articles).")] = 1_000_000,
    workdir: Annotated[Path | None, typer.Option(help="scale: keep the corpus, outputs and logs here (default: a temporary folder).")] = None,
    stages: Annotated[str, typer.Option(help="scale: comma-separated stages to run; those left out must have run in --workdir.")] = "ingest,preannotate,merge,evaluate,publish",
    dask: Annotated[bool, typer.Option("--dask", help="scale: the real-model row runs on a LocalCluster of --n-process "
                                                   "Dask workers, not spaCy's n_process.")] = False,
    stance_model: StanceModelOpt = None,
) -> None:
    """Throughput of a stage beside the bare library (or the bare Label Studio API) on generated data, as a ratio."""
    from pipeline.bench import preannotate as stage_bench

    if stage == "scale":
        from pipeline.bench import scale as bench_scale

        resources = bench_scale.Resources(params=params.resolve(), boilerplate=Path("resources/boilerplate.yaml").resolve(),
                                          patterns=patterns.resolve(), actors=actors.resolve(), lexicon=lexicon.resolve(),
                                          guidelines=Path("resources/guidelines.md").resolve())
        bench_scale.main(articles=articles or [10_000], preannotate_articles=preannotate_articles, n_process=n_process,
                         max_publish=max_publish_articles, workdir=workdir, res=resources,
                         stages=[s for s in stages.split(",") if s], dask=dask, repeat=repeat)
        return
    if stage == "label-studio":
        from pipeline.bench import labelstudio as ls_bench

        if tasks < 1:
            raise ConfigError("--tasks must be at least 1")
        ls_bench.main(tasks, params, port, repeat)
        return
    stage_bench.main(
        stage=stage,
        docs=docs,
        tasks=tasks,
        n_process=n_process,
        repeat=repeat,
        params=params,
        patterns=patterns,
        actors=actors,
        lexicon=lexicon,
        stance_model=stance_model,
    )


@app.command()
def merge(
    preannotated: Annotated[Path, typer.Option(help="Pre-annotated articles (data/preannotated/).")],
    annotations: Annotated[Path, typer.Option(help="Folder of Label Studio snapshots, all merged; none modified.")],
    output: Annotated[Path, typer.Option(help="Labeled articles: resolved gold/silver labels, versions, split.")],
    report: Annotated[Path, typer.Option(help="JSON report: stale tasks, ties, bad records, counts.")],
    patterns: Annotated[Path, typer.Option(help="Entity patterns of the preannotate stage (actor linking).")],
    actors: Annotated[Path, typer.Option(help="Actor table of the preannotate stage (actor linking).")],
    lexicon: Annotated[Path, typer.Option(help="Stance lexicon of the preannotate stage (rules version).")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Merge human corrections from every Label Studio snapshot (less deletions) over the predictions into data/labeled.jsonl."""
    from pipeline import merge as stage

    stage.main(preannotated=preannotated, annotations=annotations, output=output, report=report, params=params,
               rules=(patterns, actors, lexicon))


@app.command()
def publish(
    input: Annotated[Path, typer.Option("--input", help="Labeled articles (data/labeled.jsonl).")],
    output: Annotated[Path, typer.Option(help="Dataset folder to (re)build: Parquet per config/split, card, figure.")],
    metrics: Annotated[Path, typer.Option(help="The evaluate stage's metrics folder (read if present).")] = Path("metrics"),
    releases: Annotated[Path, typer.Option(help="Committed manifests of published versions, for the changelog.")] = Path("releases"),
    guidelines: Annotated[Path, typer.Option(help="Annotation guidelines quoted in the card.")] = Path("resources/guidelines.md"),
    push: Annotated[str | None, typer.Option("--push", metavar="REPO_ID", help="Upload to this Hub dataset repo and tag v<version>.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --push: list what would be uploaded, upload nothing.")] = False,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Build the Hugging Face dataset folder from data/labeled.jsonl; optionally push it to the Hub."""
    from pipeline import publish as stage

    stage.main(input=input, output=output, params=params, metrics=metrics, releases=releases, guidelines=guidelines,
               push_to=push, dry_run=dry_run)


@app.command()
def hydrate(
    dataset: Annotated[Path, typer.Option(help="A text-free release (publish.include_text: false): its folder, e.g. a download of the Hub repo.")],
    articles: Annotated[Path, typer.Option(help="Your copies of the articles: a folder as ingest reads (.txt, .jsonl, .csv), "
                                                "or the pipeline's cleaned data/articles/ shard folder.")],
    output: Annotated[Path, typer.Option(help="The full dataset folder to write (replaced).")],
    patterns: Annotated[Path, typer.Option(help="Ingest's boilerplate patterns: raw copies are cleaned as ingest cleaned them.")] = Path("resources/boilerplate.yaml"),
) -> None:
    """Rebuild the full dataset from a text-free release and your own copies of its articles (each checked against its hash)."""
    from pipeline.dataset import hydrate as command

    command.main(dataset=dataset, articles=articles, output=output, patterns=patterns)


@app.command()
def evaluate(
    input: Annotated[Path, typer.Option("--input", help="Labeled articles (data/labeled.jsonl).")],
    metrics: Annotated[Path, typer.Option(help="Folder for the DVC metrics: preannotation, effort, agreement, dataset.")],
    plots: Annotated[Path, typer.Option(help="Folder for the DVC plot data: per-label F1, effort, labels, confusion, time.")],
    params: ParamsOpt = Path("params.yaml"),
    annotations: Annotated[Path | None, typer.Option(
        help="Snapshots folder: the review queue's answers (annotations/review/) give its seconds per pair.")] = None,
) -> None:
    """Score pre-annotation against human corrections, correction effort, agreement and dataset statistics."""
    from pipeline import evaluate as stage

    stage.main(input=input, metrics=metrics, plots=plots, params=params, annotations=annotations)


@app.command()
def gold(
    gold: Annotated[Path, typer.Option("--gold", help="Gold YAML file or folder (gold/).")],
    articles: Annotated[Path, typer.Option(help="Cleaned articles (data/articles/) the gold quotes.")],
    output: Annotated[Path, typer.Option(help="Gold records with character offsets, one JSON object per line.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Resolve the human gold annotations (gold/*.yaml) into offsets in the cleaned articles."""
    from pipeline.gold import files as stage

    stage.main(gold=gold, articles=articles, output=output, params=params)


@app.command("evaluate-gold")
def evaluate_gold(
    gold: Annotated[Path, typer.Option("--gold", help="Gold YAML file or folder (gold/).")],
    articles: Annotated[Path, typer.Option(help="Cleaned articles (data/articles/) the gold quotes.")],
    predictions: Annotated[Path, typer.Option(help="Pre-annotations of those articles (data/preannotated/).")],
    output: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Print entity and stance precision/recall/F1 of the pre-annotations against the seed gold."""
    from pipeline.gold import compare as stage

    stage.evaluate_main(gold=gold, articles=articles, predictions=predictions, output=output, params=params)


# Research commands on evaluation data (SEESAW, re3d) live in cli_research.py, on this same app.
app.registered_commands += cli_research.app.registered_commands


def main() -> None:
    """Run the app, turning pipeline errors into one line on stderr and a non-zero exit."""
    try:
        app()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:  # an output that cannot be written (permissions, a full disk): a path problem, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(ConfigError.exit_code)
