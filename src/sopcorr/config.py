"""Configuration: load YAML files, validate against ``workflow/schemas/config.schema.yaml``
and fill in defaults. Errors are :class:`sopcorr.errors.ConfigError` with one line that names
the key at fault (``manifold.n_parts: -1 is less than the minimum of 2``)."""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .errors import ConfigError

#: the schema shipped with the workflow (repository layout: src/sopcorr/ -> ../../workflow)
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path | None = None) -> dict:
    """The schema (a fresh copy; the file is parsed once per process)."""
    return copy.deepcopy(_parsed_schema(str(path or SCHEMA_PATH)))


@functools.lru_cache(maxsize=8)
def _parsed_schema(path: str) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_default(jsonschema.Draft202012Validator)


def _key(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<config>"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place (filling defaults) and return it.

    Raises ConfigError naming the first offending key, e.g.
    ``config error: unknown key 'manifold.n_part'``,
    ``config error: backbone.name: 'resnet' is not one of ['efficientnet_lite0', 'vgg16']`` or
    ``config error: backbone.layers: unknown layer 'block99' ...`` (the backbone's own layer
    names and input-size constraint, :func:`sopcorr.features.registry.check_backbone_config`).
    """
    if not isinstance(config, dict):
        raise ConfigError(f"config error: the configuration must be a mapping, got {type(config).__name__}")
    schema = schema or load_schema()
    _check_moved_keys(config, schema)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed))
            prefix = _key(err.absolute_path)
            name = extra[0] if prefix == "<config>" else f"{prefix}.{extra[0]}"
            raise ConfigError(f"config error: unknown key '{name}' (allowed here: {', '.join(allowed)})")
        raise ConfigError(f"config error: {_key(err.absolute_path)}: {err.message}")
    _check_semantics(config)
    return config


#: keys that moved into a sub-section: section -> the sub-section that holds its former keys (the
#: paper network's settings were siamese.* until each architecture had its own sub-section)
MOVED_INTO = {"siamese": "paper"}


def _check_moved_keys(config: dict, schema: dict) -> None:
    """A key written where it used to live (``siamese.steps``) -> one line naming its new place."""
    for section, sub in MOVED_INTO.items():
        given = config.get(section)
        props = schema["properties"][section]["properties"]
        if not isinstance(given, dict):
            continue
        for key in given:
            if key not in props and key in props[sub]["properties"]:
                raise ConfigError(f"config error: {section}.{key}: moved to {section}.{sub}.{key} (the paper "
                                  f"network's keys live in {section}.{sub}, the correlation network's in "
                                  f"{section}.correlation)")


def _check_semantics(config: dict) -> None:
    ds = config["dataset"]
    if ds["kind"] == "generic" and not ds.get("path"):
        raise ConfigError("config error: dataset.path: required when dataset.kind is 'generic'")
    fl = config["flow"]
    if fl["cycle_min"] > fl["cycle_images"]:
        raise ConfigError(f"config error: flow.cycle_min: {fl['cycle_min']} confirmations need at least as many "
                          f"hubs, flow.cycle_images is {fl['cycle_images']}")
    si = config["siamese"]
    if si["rounds"] > 1 and si["round_start"] == "afresh" and si["round_interpolation"] != 1:
        raise ConfigError(f"config error: siamese.round_interpolation: {si['round_interpolation']} interpolates a "
                          "round's weights with the round before's, which needs siamese.round_start: previous "
                          "(with round_start: afresh set round_interpolation: 1)")
    lo, hi = config["siamese"]["paper"]["scale_range"]
    if lo > hi:
        raise ConfigError(f"config error: siamese.paper.scale_range: lower bound {lo} exceeds upper bound {hi}")
    # the viewer shows what the tables scored: only methods the run evaluates
    ev = config["evaluate"]
    evaluated = {m.removesuffix("_prior") for k in ("localisation_methods", "pair_methods", "dense_methods",
                                                   "figure_methods") for m in ev[k]}
    for m in config["viewer"]["methods"]:
        if m not in evaluated:
            raise ConfigError(f"config error: viewer.methods: '{m}' is not a method the run evaluates "
                              f"(add it to evaluate.pair_methods, or choose among: {', '.join(sorted(evaluated))})")
    # the backbone's layer names and stride constraint (cheap: no network is built)
    from .features.registry import check_backbone_config

    check_backbone_config(config["backbone"])


def load_config(*paths: str | Path, overrides: dict | None = None) -> dict:
    """Merge YAML files left to right (later files win, mappings merge recursively), apply
    ``overrides`` and validate."""
    merged: dict = {}
    for p in paths:
        p = Path(p)
        try:
            with open(p) as fh:
                data = yaml.safe_load(fh) or {}
        except FileNotFoundError:
            raise ConfigError(f"config error: file not found: {p}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config error: {p}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config error: {p}: the top level must be a mapping")
        merged = deep_merge(merged, data)
    if overrides:
        merged = deep_merge(merged, overrides)
    return validate_config(merged)


def deep_merge(base: dict, other: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
