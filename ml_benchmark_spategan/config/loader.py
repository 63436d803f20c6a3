"""Load, validate, write and describe the experiment configuration.

A configuration is a YAML file merged over the schema defaults (:mod:`.schema`), then ``--set
key.path=value`` overrides. Everything is checked before a :class:`~.schema.Config` is returned, so a
bad key or value fails at start-up, before a run folder is created or a device touched. All problems
are collected and raised together as one :class:`ConfigError`, one problem per line, each naming the
full dotted key, what was expected and what was found.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from ml_benchmark_spategan.config.schema import Config

#: Prefixes of the metric names the training loop logs; ``logging.best_metric`` must start with one.
BEST_METRIC_PREFIXES = ("val/", "train/")
#: The validation diagnostics the training loop logs (ml_benchmark_spategan/training/validation.py).
VALIDATION_METRICS = ("val/rmse", "val/bias_mean", "val/bias_q95", "val/bias_q98", "val/std_ratio", "val/corr",
                      "val/crps", "val/ralsd", "val/spread_skill", "val/loss_l1", "val/loss_mse")


def resolve_best_metric(metric: str, model_kind: str) -> str:
    """``logging.best_metric`` (or a sweep objective) with ``auto`` resolved for a model of ``model_kind``
    (the registry's gan/regression/fixed): val/crps for GANs, val/rmse otherwise."""
    if metric != "auto":
        return metric
    return "val/crps" if model_kind == "gan" else "val/rmse"


_YEAR_FIELDS = frozenset({"data.train_years", "data.val_years", "data.test_years"})
_CHANNEL_FIELDS = frozenset(
    {"model.generator.upsample_channels", "model.generator.working_grid", "model.discriminator.hr_channels", "model.discriminator.lr_channels"}
)
_YEAR_RE = re.compile(r"^(\d{4})(?:-(\d{4}))?$")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# Rules checked here rather than declared in the schema metadata (shown in the reference and comments).
_EXTRA_RULES = {
    "data.train_years": "each 'YYYY' or 'YYYY-YYYY' (start <= end)",
    "data.val_years": "each 'YYYY' or 'YYYY-YYYY' (start <= end)",
    "data.test_years": "each 'YYYY' or 'YYYY-YYYY' (start <= end); disjoint from train and validation years",
    "model.generator.upsample_channels": "each >= 1",
    "model.generator.working_grid": "empty or 2 entries (h, w), each >= 1",
    "model.discriminator.hr_channels": "each >= 1",
    "model.discriminator.lr_channels": "each >= 1",
    "logging.best_metric": "auto, or a name starting with 'val/' or 'train/'",
    "device": "auto, cpu, cuda or cuda:N",
}
_INVALID = object()  # marks a value that failed validation (its field falls back to the default)


class ConfigError(ValueError):
    """An invalid configuration. ``problems`` holds one message per problem; ``str(err)`` joins them by lines."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


# --- YAML -----------------------------------------------------------------------------------------------
# PyYAML follows YAML 1.1, which reads `1e-4` as a string (it wants `1.0e-4`); learning rates are
# written that way, so both the loader and the dumper resolve exponent notation as float.
_EXP_FLOAT_RE = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_FLOAT_TAG = "tag:yaml.org,2002:float"


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-4`` as a float and rejects a key repeated in one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {seen[key]})", key_node.start_mark
                    )
                if isinstance(key, (str, int, float, bool)):
                    seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _YamlDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes strings :class:`_YamlLoader` would read as floats (e.g. ``'1e5'``)."""


for _cls in (_YamlLoader, _YamlDumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT_RE, list("-+0123456789."))


def _parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text``; a syntax error becomes a ConfigError naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None


def _inline_yaml(value: Any) -> str:
    """``value`` (a scalar or a list of scalars) as one line of YAML flow syntax."""
    text = yaml.dump([value], Dumper=_YamlDumper, default_flow_style=True, width=1 << 30, allow_unicode=True)
    return text.strip()[1:-1]


def read_yaml_file(path: str | os.PathLike, what: str = "config file") -> Any:
    """The YAML document in ``path`` (exponent floats, duplicate keys rejected); ConfigError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"{what} not found: {path}"])
    if not path.is_file():
        raise ConfigError([f"{what} path is not a file: {path}"])
    return _parse_yaml(path.read_text(encoding="utf-8"), str(path))


# --- schema introspection -----------------------------------------------------------------------------
@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    if _is_section(tp):
        return "a mapping (section)"
    if get_origin(tp) is tuple:
        return f"a list of {get_args(tp)[0].__name__}"
    return tp.__name__


def _field_type(parts: Sequence[str]) -> Any:
    """Schema type at dotted key ``parts``, or None where the key does not exist."""
    tp: Any = Config
    for part in parts:
        if not _is_section(tp) or part not in _hints(tp):
            return None
        tp = _hints(tp)[part]
    return tp


def _describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        text = f"a mapping {dict(value)!r}"
    elif isinstance(value, (list, tuple)):
        text = f"a list {list(value)!r}"
    else:
        text = f"{type(value).__name__} {value!r}"
    return text if len(text) <= 80 else text[:77] + "..."


def suggest(word: str, candidates: Sequence[str]) -> str:
    """`` did you mean 'x'?`` for the closest candidate (case-insensitive), or an empty string."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[match[0]]!r}?" if match else ""


# --- validation ---------------------------------------------------------------------------------------
Problems = list[tuple[str, str]]  # (dotted key, message)


def _build_section(base: Any, raw: Mapping, path: str, problems: Problems) -> Any:
    """``base`` (a section at its defaults) with the keys in mapping ``raw``; invalid keys keep the default.

    The base is the field's default instance, not the class defaults: a section's default can differ
    from its class's (``training.optimizer_d`` is an adamw OptimizerConfig).
    """
    cls = type(base)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            suggestion = suggest(str(key), names) or f"; allowed keys: {', '.join(names)}"
            problems.append((_join(path, str(key)), f"unknown key{suggestion}"))
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            default = getattr(base, f.name)
            value = _convert(raw[f.name], default, _hints(cls)[f.name], f.metadata, _join(path, f.name), problems)
            if value is not _INVALID:
                values[f.name] = value
    return dataclasses.replace(base, **values)


def _convert(value: Any, default: Any, tp: Any, meta: Mapping, path: str, problems: Problems) -> Any:
    """``value`` checked (and converted: list -> tuple, int -> float) against schema type ``tp``."""
    if _is_section(tp):
        if value is None:  # a section written with all its keys commented out
            value = {}
        if not isinstance(value, Mapping):
            problems.append((path, f"expected {_type_name(tp)}, got {_describe_value(value)}"))
            return _INVALID
        return _build_section(default, value, path, problems)
    if get_origin(tp) is tuple:
        return _convert_tuple(value, tp, path, problems)
    value = _convert_scalar(value, tp, path, problems)
    if value is not _INVALID and not _check_rules(value, meta, path, problems):
        return _INVALID
    return value


def _convert_tuple(value: Any, tp: Any, path: str, problems: Problems) -> Any:
    if not isinstance(value, (list, tuple)):
        problems.append((path, f"expected {_type_name(tp)}, got {_describe_value(value)}"))
        return _INVALID
    element_type = get_args(tp)[0]
    n_problems = len(problems)
    items = []
    for i, item in enumerate(value):
        if path in _YEAR_FIELDS and isinstance(item, int) and not isinstance(item, bool):
            item = str(item)  # `val_years: [1980]` is unambiguous: YAML just read the year as an int
        item = _convert_scalar(item, element_type, f"{path}[{i}]", problems)
        if path in _YEAR_FIELDS and item is not _INVALID:
            _check_year(item, f"{path}[{i}]", problems)
        if path in _CHANNEL_FIELDS and item is not _INVALID and item < 1:
            problems.append((f"{path}[{i}]", f"must be >= 1, got {item!r}"))
        items.append(item)
    return tuple(items) if len(problems) == n_problems else _INVALID


def _convert_scalar(value: Any, tp: type, path: str, problems: Problems) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, tp) and (tp is bool or not isinstance(value, bool))
    if not ok:
        problems.append((path, f"expected {_type_name(tp)}, got {_describe_value(value)}"))
        return _INVALID
    if tp is float and not math.isfinite(value):
        problems.append((path, f"expected a finite number, got {value!r}"))
        return _INVALID
    return value


def _check_rules(value: Any, meta: Mapping, path: str, problems: Problems) -> bool:
    """Check ``value`` against the field's choices and bounds; False (and problems recorded) if it fails."""
    n_problems = len(problems)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        hint = suggest(str(value), [str(c) for c in choices])
        problems.append((path, f"{value!r} is not one of the allowed values: {allowed}{hint}"))
    low, high = meta.get("min"), meta.get("max")
    if low is not None and meta.get("min_exclusive") and not value > low:
        problems.append((path, f"must be > {low:g}, got {value!r}"))
    elif low is not None and not value >= low:
        problems.append((path, f"must be >= {low:g}, got {value!r}"))
    if high is not None and not value <= high:
        problems.append((path, f"must be <= {high:g}, got {value!r}"))
    return len(problems) == n_problems


def _check_year(text: str, path: str, problems: Problems) -> None:
    match = _YEAR_RE.match(text)
    if match is None:
        problems.append((path, f"expected a year 'YYYY' or a range 'YYYY-YYYY', got {text!r}"))
    elif match.group(2) is not None and int(match.group(1)) > int(match.group(2)):
        problems.append((path, f"year range {text!r} starts after it ends"))


def _cross_checks(cfg: Config) -> Problems:
    """Checks that involve more than one key or a pattern (none needs data or a device)."""
    problems: Problems = []
    if cfg.data.source == "files":
        if not cfg.data.files.target_file:
            problems.append(("data.files.target_file", "required when data.source is 'files'"))
        if not cfg.data.files.predictor_files:
            problems.append(("data.files.predictor_files", "required (at least one file) when data.source is 'files'"))
    if cfg.logging.best_metric == "auto":
        if cfg.logging.best_mode != "min":
            problems.append(("logging.best_mode", "must be 'min' with logging.best_metric: auto (val/crps or val/rmse, "
                             f"errors), got {cfg.logging.best_mode!r}"))
    elif not cfg.logging.best_metric.startswith(BEST_METRIC_PREFIXES):
        problems.append(
            ("logging.best_metric", f"must be auto or a logged metric name starting with 'val/' or 'train/', got {cfg.logging.best_metric!r}")
        )
    elif cfg.logging.best_metric.startswith("val/") and cfg.logging.best_metric not in VALIDATION_METRICS:
        close = difflib.get_close_matches(cfg.logging.best_metric, VALIDATION_METRICS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; logged: {', '.join(VALIDATION_METRICS)}"
        problems.append(("logging.best_metric", f"{cfg.logging.best_metric!r} is not a validation metric{hint}"))
    if len(cfg.model.generator.working_grid) not in (0, 2):
        problems.append(
            ("model.generator.working_grid", f"expected [] or [h, w], got {list(cfg.model.generator.working_grid)!r}")
        )
    if cfg.model.name == "bilinear" and cfg.model.doy_conditioning == "film":
        problems.append(("model.doy_conditioning", "film needs a trained model; bilinear has no trainable "
                         "parameters and uses the day of year through its monthly correction (use auto or none)"))
    if not _DEVICE_RE.match(cfg.device):
        problems.append(("device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {cfg.device!r}"))
    return problems


# --- overrides ----------------------------------------------------------------------------------------
def _apply_overrides(raw: dict, overrides: Sequence[str], problems: Problems) -> dict[str, str]:
    """Merge ``--set key.path=value`` overrides into ``raw`` in place; returns {dotted key: origin text}."""
    origins: dict[str, str] = {}
    for arg in overrides:
        key, sep, text = arg.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not all(parts):
            problems.append(("--set", f"{arg!r}: expected KEY.PATH=VALUE, e.g. training.epochs=3"))
            continue
        try:
            value = _parse_yaml(text, f"--set {arg}")
        except ConfigError as err:
            problems.append(("", str(err)))
            continue
        if _field_type(parts) is str and (value is None or isinstance(value, (bool, int, float))):
            value = text  # a string field takes the text as typed (`run.name=001` stays '001')
        _assign(raw, parts, value)
        origins[key] = f"--set {arg}"
    return origins


def _assign(raw: dict, parts: Sequence[str], value: Any) -> None:
    """Set ``raw[parts[0]][parts[1]]... = value``, creating sections; mappings are merged, not replaced."""
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    old = node.get(parts[-1])
    if isinstance(value, dict) and isinstance(old, dict):
        for key, item in value.items():
            _assign(old, [key], item)
    else:
        node[parts[-1]] = value


def _format(problems: Problems, origins: Mapping[str, str]) -> list[str]:
    lines = []
    for path, message in problems:
        line = f"{path}: {message}" if path else message
        for key, origin in origins.items():
            if path == key or path.startswith((f"{key}.", f"{key}[")):
                line += f" (from {origin})"
        lines.append(line)
    return lines


def _validate(raw: Any, overrides: Sequence[str], source: str) -> Config:
    problems: Problems = []
    if raw is None:  # an empty file
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append((source, f"the top level must be a mapping of sections, got {_describe_value(raw)}"))
        raw = {}
    raw = copy.deepcopy(dict(raw))
    origins = _apply_overrides(raw, overrides, problems)
    cfg = _build_section(Config(), raw, "", problems)
    reported = {path for path, _ in problems}
    problems += [p for p in _cross_checks(cfg) if p[0] not in reported]
    if problems:
        raise ConfigError(_format(problems, origins))
    return cfg


# --- public API ---------------------------------------------------------------------------------------
#: Keys added after runs were first stored, with the value that rebuilds those runs' models: a run folder's
#: config.yaml or a checkpoint's config without the key gets this value, not today's default.
LEGACY_DEFAULTS: dict[tuple[str, ...], Any] = {("model", "base"): "none", ("training", "loss", "spectral_weight"): 0.0}


def with_legacy_defaults(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a stored (complete) config mapping with :data:`LEGACY_DEFAULTS` filled in where absent."""
    if data is None:
        return None
    out = copy.deepcopy(dict(data))
    for path, value in LEGACY_DEFAULTS.items():
        node = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and path[-1] not in node:
            node[path[-1]] = value
    return out


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = (), stored: bool = False) -> Config:
    """The validated configuration: schema defaults <- YAML file ``path`` <- ``overrides``.

    ``path=None`` starts from the defaults alone. Each override is ``"key.path=value"`` with the value
    parsed as YAML (``3``, ``1e-4``, ``true``, ``[1961-1974, 1975-1980]``, ``null``); for a string
    field the text is taken as typed. ``stored``: ``path`` is a run folder's config.yaml, so keys it
    predates take their :data:`LEGACY_DEFAULTS`. Raises :class:`ConfigError` listing every problem found.
    """
    raw = None if path is None else read_yaml_file(path)
    if stored:
        raw = with_legacy_defaults(raw)
    return _validate(raw, overrides, source=str(path) if path is not None else "defaults")


def apply_values(cfg: Config, values: Mapping[str, Any], origin: str) -> Config:
    """``cfg`` with ``{dotted key: value}`` applied and validated exactly as ``--set`` overrides are.

    Errors read as those of ``--set`` (unknown key with a suggestion, type, choices, bounds), each
    followed by ``(from <origin>)``. Used by the sweep for sampled hyperparameters.
    """
    raw = config_to_dict(cfg)
    problems: Problems = []
    origins: dict[str, str] = {}
    for key, value in values.items():
        parts = str(key).split(".")
        if not all(parts):
            problems.append((str(key), "expected a dotted config key such as training.epochs"))
            continue
        _assign(raw, parts, value)
        origins[str(key)] = origin
    new = _build_section(Config(), raw, "", problems)
    reported = {path for path, _ in problems}
    problems += [p for p in _cross_checks(new) if p[0] not in reported]
    if problems:
        raise ConfigError(_format(problems, origins))
    return new


def build_section(base: Any, raw: Mapping, path: str = "") -> tuple[Any, list[str]]:
    """(``base`` with the keys of ``raw``, problems as 'key: message' lines) for any dataclass whose fields
    are declared like the schema's (descriptions, choices, bounds); invalid keys keep ``base``'s value."""
    problems: Problems = []
    value = _build_section(base, raw, path, problems)
    return value, _format(problems, {})


def field_type(key: str) -> Any:
    """Schema type of dotted ``key`` (a section class, a scalar type, tuple[...]), or None if there is none."""
    return _field_type(key.split("."))


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """The validated configuration from a nested mapping stored in a checkpoint (keys it predates take their
    :data:`LEGACY_DEFAULTS`)."""
    return _validate(with_legacy_defaults(data), (), source="config mapping")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """``cfg`` (a Config or any of its sections) as nested plain dicts; tuples become lists."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _rules_text(path: str, meta: Mapping) -> str:
    """The allowed values / bounds of the field at ``path``, in words ('' when anything of its type goes)."""
    rules = []
    if "choices" in meta:
        rules.append("one of " + ", ".join(str(c) for c in meta["choices"]))
    if meta.get("min") is not None:
        rules.append(f"{'>' if meta.get('min_exclusive') else '>='} {meta['min']:g}")
    if meta.get("max") is not None:
        rules.append(f"<= {meta['max']:g}")
    if path in _EXTRA_RULES:
        rules.append(_EXTRA_RULES[path])
    return "; ".join(rules)


def _sections(cls: type = Config, path: str = "", doc: str = "") -> list[tuple[str, type, str]]:
    """(dotted path, dataclass, description) of ``cls`` and every section below it, depth first."""
    out = [(path, cls, doc)]
    for f in dataclasses.fields(cls):
        if _is_section(_hints(cls)[f.name]):
            out += _sections(_hints(cls)[f.name], _join(path, f.name), f.metadata["doc"])
    return out


def _yaml_lines(section: Any, cls: type, indent: str, comments: bool, path: str) -> list[str]:
    lines = []
    for f in dataclasses.fields(cls):
        value, key_path = getattr(section, f.name), _join(path, f.name)
        if comments:
            rules = _rules_text(key_path, f.metadata)
            lines.append(f"{indent}# {f.metadata['doc']}" + (f" [{rules}]" if rules else ""))
        if _is_section(_hints(cls)[f.name]):
            lines.append(f"{indent}{f.name}:")
            lines += _yaml_lines(value, _hints(cls)[f.name], indent + "  ", comments, key_path)
            if comments and not indent:
                lines.append("")
        else:
            lines.append(f"{indent}{f.name}: {_inline_yaml(list(value) if isinstance(value, tuple) else value)}")
    return lines


def config_to_yaml(cfg: Config, *, comments: bool = True, header: str = "") -> str:
    """``cfg`` as YAML text that :func:`load_config` reads back to an equal Config.

    With ``comments`` every key is preceded by its description and allowed values from the schema;
    ``header`` (possibly several lines) is written first as a comment block.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    lines += _yaml_lines(cfg, Config, "", comments, "")
    return "\n".join(lines).rstrip("\n") + "\n"


def dump_config(cfg: Config, path: str | os.PathLike, *, comments: bool = True, header: str = "") -> Path:
    """Write ``cfg`` as YAML (see :func:`config_to_yaml`) to ``path`` atomically; returns the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config_to_yaml(cfg, comments=comments, header=header), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _md_text(text: str) -> str:
    """``text`` safe inside a markdown table cell (no HTML tags, no cell breaks)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def describe_config() -> str:
    """A markdown reference of every key: dotted path, type, default, allowed values/bounds, description."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `ml_benchmark_spategan/config/schema.py` by",
        "`python -m ml_benchmark_spategan.config --reference > docs/config_reference.md`; do not edit by hand.",
        "",
        "Keys are set in a YAML file (`--config config.yml`) or on the command line",
        "(`--set training.epochs=3`, value parsed as YAML). Unknown keys, wrong types, values outside the",
        "allowed set and out-of-bounds numbers are rejected before anything is created.",
    ]
    defaults = Config()
    for path, cls, doc in _sections():
        leaves = [f for f in dataclasses.fields(cls) if not _is_section(_hints(cls)[f.name])]
        if not leaves:
            continue
        section = defaults
        for part in filter(None, path.split(".")):
            section = getattr(section, part)
        lines += ["", f"## `{path}`" if path else "## top level", ""] + ([doc, ""] if doc else [])
        lines += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        for f in leaves:
            key_path, value = _join(path, f.name), getattr(section, f.name)
            default = _inline_yaml(list(value) if isinstance(value, tuple) else value)
            kind = _type_name(_hints(cls)[f.name]).removeprefix("a ")
            cells = [f"`{key_path}`", kind, f"`{default}`", _md_text(_rules_text(key_path, f.metadata)), _md_text(f.metadata["doc"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
