"""params.yaml's `labelstudio:` section, checked, and the client for the server that LABEL_STUDIO_URL names."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from pipeline.common.config import Count, Seconds, Section, Share, Threshold, read_env_file, section
from pipeline.common.contract import label_sets
from pipeline.common.errors import ConfigError
from pipeline.labelstudio.api import LabelStudioAPI

MAX_ANNOTATORS = 10  # annotators per task: Label Studio accepts more, no team reviews that much overlap
MAX_TITLE = 50  # Label Studio refuses a longer project title
PRACTICE = " (practice)"
MAX_RETRIES = 20  # the back-off is capped at 10 s a try: more would hang for minutes on a server that is down


def _colour(colour: str) -> str:
    """`colour`, if it is #rgb or #rrggbb."""
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", colour):
        raise ValueError(f"expected #rgb or #rrggbb, got {colour!r}")
    return colour


def _distinct_hotkeys(hotkeys: dict[str, str]) -> dict[str, str]:
    """`hotkeys`, if no two labels share one."""
    if len(set(hotkeys.values())) != len(hotkeys):
        raise ValueError(f"duplicate hotkey in {hotkeys}")
    return hotkeys


Colours = dict[str, Annotated[str, AfterValidator(_colour)]]


class ServerParams(Section):
    """The local server started by `python -m pipeline label-studio`."""

    port: Annotated[int, Field(ge=0, le=65535)]  # 0: any free port
    start_timeout_s: Seconds


class ReviewParams(Section):
    """The stance review queue: one task per proposed holder→target pair (pipeline/labelstudio/review.py)."""

    project_title: Annotated[str, Field(min_length=3, max_length=MAX_TITLE)]
    min_score: Share  # pairs the model scored below this are left out of the queue
    max_pairs: Count  # the queue holds at most this many pairs, the least certain ones
    hotkeys: Annotated[dict[str, Annotated[str, Field(min_length=1)]], AfterValidator(_distinct_hotkeys)]


class LabelStudioParams(Section):
    """params.yaml `labelstudio:` section."""

    project_title: Annotated[str, Field(min_length=3, max_length=MAX_TITLE)]  # Label Studio's own limits
    entity_colors: Colours
    entity_hotkeys: Annotated[dict[str, Annotated[str, Field(min_length=1)]], AfterValidator(_distinct_hotkeys)]
    stance_colors: Colours
    queue_order: Literal["least_confident_first", "input_order"]
    task_score: Literal["min", "mean"]
    import_batch_size: Count
    page_size: Count
    timeout_s: Seconds
    retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)]
    export_timeout_s: Seconds
    max_bad_share: Share
    lock_stale_s: Seconds
    annotations_per_task: Annotated[int, Field(ge=1, le=MAX_ANNOTATORS)]
    adjudicate_below_f1: Threshold
    server: ServerParams
    review: ReviewParams


@dataclass(frozen=True)
class Config:
    """Everything the round trip needs from params.yaml: this stage's section plus the label sets of preannotate."""

    ls: LabelStudioParams
    entity_labels: tuple[str, ...]
    stance_labels: tuple[str, ...]


def practice_config(cfg: Config) -> Config:
    """The config of the practice projects: the same labels and settings under their own titles."""
    title = f"{cfg.ls.project_title[: MAX_TITLE - len(PRACTICE)]}{PRACTICE}"
    review_title = f"{cfg.ls.review.project_title[: MAX_TITLE - len(PRACTICE)]}{PRACTICE}"
    review = cfg.ls.review.model_copy(update={"project_title": review_title})
    return dataclasses.replace(cfg, ls=cfg.ls.model_copy(update={"project_title": title, "review": review}))


def load_config(params_path: Path) -> Config:
    """Read the `labelstudio:` section and the label sets (`preannotate.entity_labels`, `preannotate.stance_labels`)."""
    ls = section(LabelStudioParams, "labelstudio", params_path)
    labels = label_sets(params_path)
    for key, mapping, known in (
        ("entity_colors", ls.entity_colors, labels.entity_labels),
        ("entity_hotkeys", ls.entity_hotkeys, labels.entity_labels),
        ("stance_colors", ls.stance_colors, labels.stance_labels),
        ("review.hotkeys", ls.review.hotkeys, (*labels.stance_labels, "none")),
    ):
        stray = sorted(set(mapping) - set(known))
        if stray:
            raise ConfigError(
                f"{params_path}:labelstudio.{key}: {', '.join(stray)} not in preannotate's labels ({', '.join(known)})"
            )
    return Config(ls, labels.entity_labels, labels.stance_labels)


ENV_KEYS = ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")


def connect(cfg: Config, env_file: Path = Path(".env")) -> LabelStudioAPI:
    """A client for the server named by LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY, both from one source.

    The environment wins when it sets either of them, and must then set both: a token from `.env` (the
    local server's admin token) is never sent to a URL from the environment, nor the other way round."""

    in_env = {key: os.environ.get(key, "") for key in ENV_KEYS}
    if any(in_env.values()):
        if not all(in_env.values()):
            have, lack = (ENV_KEYS if in_env[ENV_KEYS[0]] else ENV_KEYS[::-1])
            raise ConfigError(
                f"{have} is set in the environment but {lack} is not; export both (the URL and the token "
                f"are taken together, from the environment or else from {env_file})"
            )
        source, url, token = "the environment", in_env["LABEL_STUDIO_URL"], in_env["LABEL_STUDIO_API_KEY"]
    else:
        file_env = read_env_file(env_file)
        source, url, token = str(env_file), file_env.get("LABEL_STUDIO_URL", ""), file_env.get("LABEL_STUDIO_API_KEY", "")
        if not url:
            raise ConfigError(
                f"LABEL_STUDIO_URL is not set (environment or {env_file}); `make label-studio` starts a local server"
            )
        if not token:
            raise ConfigError(f"{env_file} sets LABEL_STUDIO_URL but not LABEL_STUDIO_API_KEY")
    try:
        return LabelStudioAPI(url, token, timeout_s=cfg.ls.timeout_s, retries=cfg.ls.retries)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {source})") from None

