"""Loads params.yaml and validates each section into a frozen pydantic model; rule files into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from pipeline.common.errors import ConfigError, PipelineError, one_line

T = TypeVar("T")
S = TypeVar("S", bound="Section")

DEFAULT_PARAMS = Path("params.yaml")


# Magnitudes a parameter may have: past these, counts and sizes overflow C integers in the libraries below.
MAX_INT = 2**53
MAX_FLOAT = 1e15
MAX_WORKERS = 1024  # Dask worker processes a stage may ask for (a local machine has its own, lower limit)
MAX_SECONDS = 7 * 86_400  # a timeout or age in params: a week is longer than any wait worth making
# The longest article text a stage accepts: spaCy's nlp.max_length (E088). Past it the parser and NER need
# about 1 GB of memory per 100,000 characters, so ingest rejects such texts and preannotate never meets one.
MAX_TEXT_CHARS = 1_000_000


# How a value read from a file is quoted in an error: cut, whatever its size (reprlib never builds the whole repr).
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict, _SHOWN.maxset = 3, 8, 8, 6, 8

# Bounds of a YAML file any stage reads (params, rules, actors, gold): far above any real one, far below a bomb.
MAX_YAML_CHARS = 2_000_000  # a larger file is refused unread
MAX_YAML_DEPTH = 100  # nested lists and mappings (PyYAML's composer recurses: 5,000 levels were a RecursionError)
MAX_YAML_ALIASES = 1_000  # alias nodes (*name) in one document
MAX_YAML_ALIASED_NODES = 10_000  # nodes an alias stands for, counted once per alias ("billion laughs": 10**9)


class BoundedLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses deep nesting, many aliases, aliases standing for many nodes, and recursive aliases.

    Checked while composing, before anything is built: an alias is a reference to its anchor's node, so the
    nodes it stands for (its anchor's, the aliases inside counted in full) are what a reader of the result meets.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._aliased = 0
        self._open: set[str] = set()  # anchors of the nodes being composed
        self._sizes: dict[int, int] = {}  # nodes a composed node stands for, by id

    def compose_document(self) -> Any:
        self._aliases = self._aliased = 0
        self._sizes = {}
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                self._refuse(f"more than {MAX_YAML_ALIASES} aliases in one document", event)
            if event.anchor in self._open:
                self._refuse(f"alias *{event.anchor} refers to a node that contains it", event)
            if event.anchor in self.anchors:
                self._aliased += self._size(self.anchors[event.anchor])
                if self._aliased > MAX_YAML_ALIASED_NODES:
                    self._refuse(f"aliases stand for more than {MAX_YAML_ALIASED_NODES} nodes", event)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            self._refuse(f"nested deeper than {MAX_YAML_DEPTH} levels", event)
        anchor: str | None = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # PyYAML's name
        # The scanner reads a whole flow collection ahead (each "[" may start a key) in time quadratic in its depth.
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    @staticmethod
    def _refuse(problem: str, event: Any) -> typing.NoReturn:
        """Stop composing: `problem` at `event`'s line."""
        raise yaml.composer.ComposerError(None, None, problem, event.start_mark)

    def _size(self, node: yaml.Node) -> int:
        """How many nodes `node` stands for, aliases inside it expanded (memoised: linear in the distinct nodes)."""
        if (found := self._sizes.get(id(node))) is not None:
            return found
        if isinstance(node, yaml.SequenceNode):
            found = 1 + sum(self._size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            found = 1 + sum(self._size(key) + self._size(value) for key, value in node.value)
        else:
            found = 1
        self._sizes[id(node)] = found
        return found


def load_yaml(path: Path, loader: type[BoundedLoader], error: type[PipelineError] = ConfigError) -> Any:
    """Parse the YAML file `path` with `loader`; a file too large or unusable YAML is one line of `error` naming it.

    A missing or unreadable file (OSError) and one that is not UTF-8 (UnicodeDecodeError) are the caller's to report.
    """
    with Path(path).open(encoding="utf-8") as file:
        text = file.read(MAX_YAML_CHARS + 1)
    if len(text) > MAX_YAML_CHARS:
        raise error(f"{path}: more than {MAX_YAML_CHARS:,} characters, too large for a YAML file: not read")
    try:
        return yaml.load(text, Loader=loader)  # a BoundedLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise error(one_line(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}")) from None


class _UniqueKeyLoader(BoundedLoader):
    """Safe YAML loader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_SHOWN.repr(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, what: str = "file") -> Any:
    """Parse a YAML configuration or rule file, with a one-line error naming the file (and line) if unusable."""
    try:
        return load_yaml(path, _UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason})") from None


def key_problem(data: Mapping[Any, Any]) -> str | None:
    """Why a parsed YAML mapping has an unusable key (YAML 1.1 reads `no:` as false and `2:` as 2), or None."""
    for key in data:
        if not isinstance(key, str):
            return (
                f"key {_SHOWN.repr(key)} ({type(key).__name__}) is not a string: quote it "
                f"(YAML reads unquoted yes/no/on/off as booleans and digits as numbers)"
            )
    return None


def load_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml as a mapping, with a one-line error if it is missing or malformed."""
    data = read_yaml(path, "params file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    if problem := key_problem(data):
        raise ConfigError(f"{path}: {problem}")
    return data


def _as_tuple(value: Any) -> Any:
    """A YAML list as a tuple, so a frozen section holds no mutable list (other values are left to validation)."""
    return tuple(value) if isinstance(value, list) else value


# The numbers a section may hold: every field of a section is one of these or has its own bounds.
Share = Annotated[float, Field(ge=0, le=1)]  # a share of records, 0 and 1 included
Threshold = Annotated[float, Field(gt=0, le=1)]  # a probability or similarity from which something happens
Count = Annotated[int, Field(ge=1, le=MAX_INT)]  # a size, a batch, a number of rows
Workers = Annotated[int, Field(ge=1, le=MAX_WORKERS)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
Names = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_as_tuple)]


class Section(BaseModel):
    """A params.yaml section: every key required (params.yaml holds the one default), none unknown, values checked."""

    # strict: no "2" for 2, no true for 1; ints are still taken for floats. NaN and infinities are no parameters.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def section(cls: type[S], name: str, path: Path = DEFAULT_PARAMS) -> S:
    """Validate the params section `name` into the model `cls`."""
    params = load_params(path)
    if name not in params:
        raise ConfigError(f"{path}: missing section '{name}'")
    return validated(cls, params[name], f"{path}:{name}")


def validated(cls: type[S], data: Any, where: str, owners: Mapping[str, str] | None = None) -> S:
    """`data` validated into the model `cls`; the first problem is one ConfigError line naming `where` and the key.

    `owners` names the section a key was borrowed from (`{key: "params.yaml:preannotate"}`), so its error names that.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    if problem := key_problem(data):  # before pydantic, which would name a YAML `no:` key as an unknown 0
        raise ConfigError(f"{where}: {problem}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(_message(cls, exc, where, owners or {}))) from None


def _message(cls: type[BaseModel], exc: ValidationError, where: str, owners: Mapping[str, str]) -> str:
    """The first of pydantic's errors as today's one line: `file:section.key: problem` (unknown keys all at once)."""
    errors = exc.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    error = unknown[0] if unknown else errors[0]
    loc = tuple(error["loc"])
    if loc and isinstance(loc[0], str) and loc[0] in owners:
        where = owners[loc[0]]
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        parent = loc[:-1]
        names = sorted(str(e["loc"][-1]) for e in unknown if tuple(e["loc"][:-1]) == parent)
        model = _model_at(cls, parent)
        expected = f"; expected {', '.join(model.model_fields)}" if model else ""
        return f"{_where(where, parent)}: unknown key(s) {', '.join(names)}{expected}"
    if kind == "missing":
        return f"{_where(where, loc[:-1])}: missing key '{loc[-1]}'"
    if kind == "invalid_key" or (loc and loc[-1] == "[key]"):
        dict_loc = loc[:-2] if loc[-1] == "[key]" else loc[:-1]
        return f"{_where(where, dict_loc)}: {key_problem({value: None})}"
    return f"{_where(where, loc)}: {_problem(error, _field(cls, loc))}"


def _where(where: str, loc: tuple[Any, ...]) -> str:
    """`where` followed by a key path: `.name` for a key, `[i]` for a list item."""
    return where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that the keys `loc` lead to from `cls`, or None where they lead elsewhere (a list, a mapping)."""
    model: Any = cls
    for part in loc:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field(cls: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    """The field that `loc` names, or None (an item of a list or mapping)."""
    model = _model_at(cls, loc[:-1])
    return model.model_fields.get(loc[-1]) if model and loc and isinstance(loc[-1], str) else None


_TYPES = {"string": "str", "int": "int", "float": "float", "bool": "bool"}


def _shown(value: Any) -> str:
    """A value as an error quotes it: short, whatever its size."""
    big = type(value) is int and abs(value) > MAX_INT
    return f"{value:.3g}" if big else _SHOWN.repr(value)


def _problem(error: Any, field: FieldInfo | None) -> str:
    """What is wrong with one value, as today's messages say it."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    got = f"got {type(value).__name__} {_shown(value)}"
    base = kind.split("_")[0]
    if kind.endswith(("_type", "_parsing", "_from_float")) and base in _TYPES:
        return f"expected {_TYPES[base]}, {got}"
    if kind in ("tuple_type", "list_type", "dict_type", "model_type", "model_attributes_type"):
        mapping = kind not in ("tuple_type", "list_type")
        return f"expected a mapping, got {type(value).__name__}" if mapping else f"expected a list, {got}"
    if kind == "finite_number":
        return f"expected a finite number of at most {MAX_FLOAT:g}, got {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"must be {_range(field, ctx)}, got {_shown(value)}"
    if kind == "literal_error":
        return f"{_shown(value)} is not one of {ctx.get('expected')}"
    if kind == "value_error":
        return str(ctx.get("error"))
    if kind in ("string_too_short", "too_short", "string_too_long", "too_long"):
        bound = f"at least {ctx.get('min_length')}" if kind.endswith("short") else f"at most {ctx.get('max_length')}"
        return f"expected {bound} {'characters' if kind.startswith('string') else 'item(s)'}, {got}"
    return f"{error['msg'][:1].lower()}{error['msg'][1:]}, {got}"


def _range(field: FieldInfo | None, ctx: Mapping[str, Any]) -> str:
    """The allowed range of a number, from its field's bounds (annotated_types' Gt, Ge, Lt, Le): `in (0, 1]`."""
    bounds = dict(ctx)
    for item in field.metadata if field else ():
        bounds |= {name: getattr(item, name) for name in ("gt", "ge", "lt", "le") if getattr(item, name, None) is not None}
    low = next((f"{'(' if n == 'gt' else '['}{bounds[n]}" for n in ("gt", "ge") if n in bounds), "(-inf")
    high = next((f"{bounds[n]}{')' if n == 'lt' else ']'}" for n in ("lt", "le") if n in bounds), "inf)")
    return f"in {low}, {high}"


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build the rule-file dataclass `cls` from `data`, rejecting unknown, missing and mistyped keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    if problem := key_problem(data):
        raise ConfigError(f"{where}: {problem}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing key '{name}'")
            continue
        values[name] = _coerce(hints[name], data[name], f"{where}.{name}")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        problem = validate()
        if problem:
            raise ConfigError(f"{where}: {problem}")
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against type `tp`, converting lists to tuples and nested mappings to dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {_SHOWN.repr(value)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {_SHOWN.repr(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        ktp, vtp = args or (Any, Any)
        if ktp is str and (problem := key_problem(value)):
            raise ConfigError(f"{where}: {problem}")
        return types.MappingProxyType(
            {_coerce(ktp, k, where): _coerce(vtp, v, f"{where}.{k}") for k, v in value.items()}
        )
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {tp.__name__}, got bool")
    if tp is float and isinstance(value, float) and not abs(value) <= MAX_FLOAT:  # also NaN
        raise ConfigError(f"{where}: expected a finite number of at most {MAX_FLOAT:g}, got {value!r}")
    if tp is int and isinstance(value, int) and abs(value) > MAX_INT:
        raise ConfigError(f"{where}: expected an integer of at most {MAX_INT}, got {value:.3g}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {_SHOWN.repr(value)}")
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """The settings of a .env file as python-dotenv reads them, without valueless keys; a missing file is empty."""
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path) if path.is_file() else {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return {key: value for key, value in values.items() if value is not None}
