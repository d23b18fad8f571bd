"""The three rule files the annotator reads (domain patterns, actors, stance lexicon), loaded and versioned together."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.config import from_mapping, read_yaml
from pipeline.common.errors import ConfigError
from pipeline.common.provenance import file_digest, sha256_text
from pipeline.entities.actors import ActorIndex, Actors
from pipeline.entities.patterns import Patterns
from pipeline.stance.lexicon import Lexicon, load_lexicon


def _load_yaml(cls: type, path: Path) -> Any:
    """Read a YAML rule file and validate it into `cls`, with one-line errors."""
    return from_mapping(cls, read_yaml(path), str(path))


@dataclass(frozen=True)
class Rules:
    """The domain layer, the actors and the stance lexicon, with a short hash over all three."""

    patterns: Patterns
    actors: ActorIndex
    lexicon: Lexicon
    version: str


def load_rules(patterns: Path, actors: Path, lexicon: Path, stance_labels: Iterable[str]) -> Rules:
    """Load and validate the three rule files; any problem is a ConfigError."""
    pats = _load_yaml(Patterns, patterns)
    index = ActorIndex(_load_yaml(Actors, actors), pats.titles, str(actors))
    if not Path(lexicon).is_file():
        raise ConfigError(f"{lexicon}: file not found")
    lex = load_lexicon(lexicon, labels=list(stance_labels))
    version = sha256_text("\n".join([file_digest(patterns), file_digest(actors), lex.version]))[:12]
    return Rules(pats, index, lex, version)
