"""params.yaml's `labelstudio:` section, checked, and the client for the server that LABEL_STUDIO_URL names."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.common.config import from_mapping, load_params, read_env_file
from pipeline.common.contract import label_sets
from pipeline.common.errors import ConfigError
from pipeline.labelstudio.api import LabelStudioAPI

MAX_ANNOTATORS = 10  # annotators per task: Label Studio accepts more, no team reviews that much overlap
MAX_TITLE = 50  # Label Studio refuses a longer project title
PRACTICE = " (practice)"
MAX_RETRIES = 20  # the back-off is capped at 10 s a try: more would hang for minutes on a server that is down


def _positive(value: float) -> bool:
    """A finite number > 0."""
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class ServerParams:
    """The local server started by `python -m pipeline label-studio`."""

    port: int
    start_timeout_s: float

    def validate(self) -> str | None:
        """Range checks."""
        if not 0 <= self.port <= 65535:
            return f"port: expected a TCP port 1-65535 (or 0: any free port), got {self.port}"
        if not _positive(self.start_timeout_s):
            return f"start_timeout_s: expected a number of seconds > 0, got {self.start_timeout_s}"
        return None


@dataclass(frozen=True)
class LabelStudioParams:
    """params.yaml `labelstudio:` section."""

    project_title: str
    entity_colors: dict[str, str]
    entity_hotkeys: dict[str, str]
    stance_colors: dict[str, str]
    queue_order: Literal["least_confident_first", "input_order"]
    task_score: Literal["min", "mean"]
    import_batch_size: int
    page_size: int
    timeout_s: float
    retries: int
    export_timeout_s: float
    max_bad_share: float
    lock_stale_s: float
    annotations_per_task: int
    adjudicate_below_f1: float
    server: ServerParams

    def validate(self) -> str | None:
        """Range and cross-field checks."""
        if not 3 <= len(self.project_title) <= MAX_TITLE:
            return f"project_title: Label Studio needs 3 to {MAX_TITLE} characters, got {len(self.project_title)}"
        for key in ("import_batch_size", "page_size"):
            if getattr(self, key) < 1:
                return f"{key}: expected an integer >= 1, got {getattr(self, key)}"
        for key in ("timeout_s", "export_timeout_s", "lock_stale_s"):
            if not _positive(getattr(self, key)):
                return f"{key}: expected a number of seconds > 0, got {getattr(self, key)}"
        if not 0 <= self.retries <= MAX_RETRIES:
            return f"retries: expected an integer 0-{MAX_RETRIES}, got {self.retries}"
        if not 1 <= self.annotations_per_task <= MAX_ANNOTATORS:
            return f"annotations_per_task: expected an integer 1-{MAX_ANNOTATORS}, got {self.annotations_per_task}"
        if not 0.0 < self.adjudicate_below_f1 <= 1.0:
            return f"adjudicate_below_f1: expected a span F1 in (0, 1], got {self.adjudicate_below_f1}"
        if not 0.0 <= self.max_bad_share <= 1.0:
            return f"max_bad_share: expected a share 0-1, got {self.max_bad_share}"
        keys = list(self.entity_hotkeys.values())
        if len(set(keys)) != len(keys):
            return f"entity_hotkeys: duplicate hotkey in {dict(self.entity_hotkeys)}"
        for name, colour in {**self.entity_colors, **self.stance_colors}.items():
            if not (colour.startswith("#") and len(colour) in (4, 7)):
                return f"colour of {name}: expected #rgb or #rrggbb, got {colour!r}"
        return None


@dataclass(frozen=True)
class Config:
    """Everything the round trip needs from params.yaml: this stage's section plus the label sets of preannotate."""

    ls: LabelStudioParams
    entity_labels: tuple[str, ...]
    stance_labels: tuple[str, ...]


def practice_config(cfg: Config) -> Config:
    """The config of the practice project: the same labels and settings under its own title."""
    title = f"{cfg.ls.project_title[: MAX_TITLE - len(PRACTICE)]}{PRACTICE}"
    return dataclasses.replace(cfg, ls=dataclasses.replace(cfg.ls, project_title=title))


def load_config(params_path: Path) -> Config:
    """Read the `labelstudio:` section and the label sets (`preannotate.entity_labels`, `preannotate.stance_labels`)."""
    params = load_params(params_path)
    if "labelstudio" not in params:
        raise ConfigError(f"{params_path}: missing section 'labelstudio'")
    ls = from_mapping(LabelStudioParams, params["labelstudio"], f"{params_path}:labelstudio")
    labels = label_sets(params_path)
    for key, mapping, known in (
        ("entity_colors", ls.entity_colors, labels.entity_labels),
        ("entity_hotkeys", ls.entity_hotkeys, labels.entity_labels),
        ("stance_colors", ls.stance_colors, labels.stance_labels),
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

