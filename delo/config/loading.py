"""Loading a run config (YAML with ``extends``, ``--set a.b=v`` overrides), and the helpers the sweep spec shares.

Every problem is reported at once in one :class:`ConfigError`, each line naming the dotted key, the bad value and
what is allowed; unknown keys get a "did you mean" suggestion. The YAML reader refuses duplicated keys.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from delo.config.errors import ConfigError
from delo.config.schema import RunConfig

# Schema walking (the run config's and the sweep spec's)


def _schema_keys(model: type[BaseModel], prefix: str = "") -> dict[str, type[BaseModel] | None]:
    """Every valid dotted key -> its section class (None for leaves)."""
    keys: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        sub = _section_class(field.annotation)
        keys[dotted] = sub
        if sub is not None:
            keys.update(_schema_keys(sub, dotted + "."))
    return keys


def _section_class(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def annotation_leaves(annotation: Any) -> list[Any]:
    """The leaves of a type annotation: union members, Literal values, Annotated's type, a plain class."""
    if getattr(annotation, "__metadata__", None) is not None:  # Annotated[X, ...]
        return annotation_leaves(annotation.__origin__)
    if isinstance(annotation, type):
        return [annotation]
    args = getattr(annotation, "__args__", ())
    return [leaf for a in args for leaf in annotation_leaves(a)] if args else [annotation]


def fields_at(model: type[BaseModel], loc: tuple | list) -> list[str]:
    """The field names of the model found at a pydantic error location under ``model`` ([] when none is).

    A ``dict[str, X]`` field takes the next step as its key; a discriminated union of models (on ``type``)
    takes the next step as its tag, as pydantic's locations do."""
    parts = [str(p) for p in loc]
    while parts:
        info = model.model_fields.get(parts.pop(0))
        if info is None:
            return []
        annotation = info.annotation
        if getattr(annotation, "__origin__", None) is dict:
            if not parts:
                return []
            parts.pop(0)
            annotation = annotation.__args__[1]
        members = [
            m for m in annotation_leaves(annotation) if isinstance(m, type) and issubclass(m, BaseModel)
        ]
        if len(members) > 1 and parts:
            tag = parts.pop(0)
            members = [m for m in members if tag in annotation_leaves(m.model_fields["type"].annotation)]
        if not members:
            return []
        model = members[0]
    return list(model.model_fields)


VALID_KEYS = _schema_keys(RunConfig)


def check_key(dotted: str) -> None:
    """Raise ConfigError when ``dotted`` is not a key of the run config (with a suggestion)."""
    if dotted not in VALID_KEYS:
        raise ConfigError(_unknown_key_message(dotted))


def _unknown_key_message(dotted: str) -> str:
    close = difflib.get_close_matches(dotted, list(VALID_KEYS), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{dotted}: unknown key{hint}"


# ----------------------------------------------------------------------------------------------------------
# Error formatting


def format_validation_error(
    err: ValidationError,
    title: str,
    unknown: Callable[[tuple, str], str],
    *,
    name_cross_field: bool = False,
) -> str:
    """One ConfigError text for every problem pydantic found: ``title``, then a line per error.

    ``unknown(loc, dotted)`` words an unknown key (with its "did you mean"). A cross-field check (its input is
    the whole section) names its keys itself; ``name_cross_field`` still prefixes its location."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        if e["type"] == "extra_forbidden":
            lines.append(unknown(e["loc"], loc))
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if not isinstance(e.get("input"), dict):
            lines.append(f"{loc or '(top level)'}: {msg} (got {e.get('input')!r})")
        elif name_cross_field:
            lines.append(f"{loc or '(top level)'}: {msg}")
        else:
            lines.append(msg)
    return f"{title}:\n  " + "\n  ".join(lines)


def _format_errors(err: ValidationError, source: str) -> str:
    where = f" in {source}" if source else ""
    return format_validation_error(
        err, f"invalid run config{where}", lambda _, dotted: _unknown_key_message(dotted)
    )


# ----------------------------------------------------------------------------------------------------------
# YAML and key=value


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice (or two keys that differ only in case); the message says where."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a repeated key, or with two keys that differ only in case.

    Plain PyYAML keeps the last of two equal keys without a word, so ``model: {E: 4, E: 8}`` would run E=8 and a
    typo'd ``e:`` next to ``E:`` could shadow a value; both are refused with the key's dotted path and both line
    numbers. Merge keys (``<<: *anchor``) may still be overridden by explicit keys, as YAML intends."""

    def compose_document(self):
        node = super().compose_document()
        _check_keys(node, "")
        return node


def _check_keys(node: yaml.Node, prefix: str) -> None:
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, f"{prefix}[{i}]")
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
        dotted = f"{prefix}.{name}" if prefix else name
        if isinstance(key_node, yaml.ScalarNode):
            first = seen.get(name.casefold())
            if first is not None:
                line, again = first.start_mark.line + 1, key_node.start_mark.line + 1
                if first.value == name:
                    raise DuplicateKeyError(
                        f"duplicated key '{dotted}' (lines {line} and {again}); YAML would silently keep the "
                        "last one. Remove one of them."
                    )
                raise DuplicateKeyError(
                    f"keys '{prefix + '.' if prefix else ''}{first.value}' (line {line}) and '{dotted}' (line "
                    f"{again}) differ only in case; keys are case-sensitive, so one of them is not the "
                    "setting it looks like. Keep the right spelling only."
                )
            seen[name.casefold()] = key_node
        _check_keys(value_node, dotted)


def strict_yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that raises :class:`DuplicateKeyError` for repeated (or case-only different) keys."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_mapping(
    path: str | Path,
    what: str = "config file",
    shape: str = "top level must be a mapping of sections",
    *,
    empty_ok: bool = True,
) -> dict[str, Any]:
    """A YAML file that must hold a mapping; ConfigError naming the file when it is absent, malformed or not a
    mapping (``shape`` says what it should be). An empty file is {} when ``empty_ok``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        data = strict_yaml_load(path.read_text())
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {shape}, got {type(data).__name__}")
    return data


def read_yaml_or_none(path: str | Path) -> Any:
    """A YAML file's content, or None when it is absent or unreadable (bookkeeping files a crash may cut)."""
    try:
        return strict_yaml_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def split_assignment(text: str, what: str = "override", form: str = "section.key=value") -> tuple[str, Any]:
    """``key=value`` -> (key, value read as YAML, so 1e-4, [1, 2] and null work; unparsable text stays a string).
    Without '=': ConfigError "<what> 'text' must look like <form>"."""
    if "=" not in text:
        raise ConfigError(f"{what} {text!r} must look like {form}")
    key, raw = text.split("=", 1)
    try:
        value = strict_yaml_load(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"{what} {text!r}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def read_with_extends(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, merging it over the file its ``extends:`` key names (relative to it)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'extends' cycle through {', '.join(map(str, _seen))}")
    data = read_yaml_mapping(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must be a file path, got {parent!r}")
    base = read_with_extends(path.parent / parent, (*_seen, path))
    return deep_merge(base, data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", parsed value); the value is read as YAML (so 1e-4, [1, 2], null work)."""
    key, value = split_assignment(text)
    check_key(key)
    return key, value


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``data`` with ``dotted`` set to ``value``."""
    head, _, rest = dotted.partition(".")
    out = dict(data)
    if rest:
        child = out.get(head)
        out[head] = set_dotted(child if isinstance(child, dict) else {}, rest, value)
    else:
        out[head] = value
    return out


def key_problem(dotted: str) -> str:
    """The :func:`check_key` message for ``dotted``, or "" when it is a run-config key."""
    try:
        check_key(dotted)
    except ConfigError as exc:
        return str(exc)
    return ""


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with every dotted override set (``data`` is left as it is)."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        out = set_dotted(out, key, value)
    return out


def build_or_collect(data: dict[str, Any], what: str, errors: list[str]) -> RunConfig | None:
    """:func:`build_config`, appending its message to ``errors`` instead of raising (None then)."""
    try:
        return build_config(data, what)
    except ConfigError as exc:
        errors.append(str(exc))
        return None


def build_config(data: dict[str, Any], source: str = "") -> RunConfig:
    """Validate a plain dict into a RunConfig, reporting every problem at once."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
) -> RunConfig:
    """Load a run config: defaults <- YAML file (with extends) <- ``extra`` dict <- dotted overrides."""
    data: dict[str, Any] = read_with_extends(path) if path else {}
    if extra:
        data = deep_merge(data, extra)
    for item in overrides:
        key, value = parse_override(item)
        data = set_dotted(data, key, value)
    return build_config(data, str(path) if path else "")


def reference_table() -> str:
    """Markdown table of every config key with its default and description (README's config reference)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            sub = _section_class(field.annotation)
            if sub is not None and field.default is not None:
                walk(sub, f"{prefix}{name}.")
                continue
            default = (
                field.default.model_dump(mode="json")
                if isinstance(field.default, BaseModel)
                else field.default
            )
            text = (field.description or "").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| `{prefix}{name}` | `{json.dumps(default)}` | {text} |")

    walk(RunConfig, "")
    return "\n".join(rows)
