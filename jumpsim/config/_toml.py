"""TOML files, ``--set`` overrides, ``extends`` and ``[sweep]``: text in, validated ``Config`` records out."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._schema import SECTIONS, Config
from ._sections import from_dict


def default_toml() -> str:
    """The built-in default experiment (``jumpsim run`` with no CONFIG)."""
    return resources.files("jumpsim").joinpath("default.toml").read_text()


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (path, value); value parsed as TOML, else taken as a string."""
    if "=" not in text:
        raise ConfigError("--set", f"expected section.key=value (got {text!r})")
    path, value = text.split("=", 1)
    path = path.strip()
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise ConfigError("--set", f"expected section.key=value (got {text!r})")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides; one on a swept key (or inside a swept schedule) replaces that sweep."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        sweep = raw.get("sweep")
        if isinstance(sweep, dict):
            sweep.pop(".".join(parts[:2]), None)
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):  # e.g. --set train.lr.kind=... over a number
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = value
    return raw


def parse_toml(text: str, source: str = "config") -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"{source}: not valid TOML ({e})") from None


def _merge(base: dict, top: dict) -> dict:
    """Deep merge of TOML tables: ``top`` wins; a table in ``top`` merges into the same table of ``base``."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_toml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Parse a TOML config; a top-level ``extends = "base.toml"`` (relative to the file) merges the file over
    that base (recursively), so experiments can share one problem definition. config_id sees only the result."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("", f"{p}: cannot read config file ({e.__class__.__name__}: {e})") from None
    raw = parse_toml(text, str(p))
    if "extends" not in raw:
        return raw
    base = raw.pop("extends")
    if not isinstance(base, str) or not base:
        raise ConfigError("extends", f"{p}: must be the path of a TOML file (got {base!r})")
    base_path = (p.parent / base).resolve()
    if base_path in _seen:
        raise ConfigError("extends", f"{p}: {base} extends itself (through {', '.join(map(str, _seen))})")
    return _merge(read_toml(base_path, (*_seen, p.resolve())), raw)


def expand(raw: dict, base_dir: str | Path = ".") -> list[Config]:
    """Validate a raw config; a ``[sweep]`` table of ``"section.key" = [values]`` expands to
    the cross product, one ``Config`` (one config_id) per combination, in row-major order."""
    raw = dict(raw)
    sweep = raw.pop("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError("sweep", 'must be a table of "section.key" = [values]')
    keys = list(sweep)
    for k in keys:
        if not isinstance(sweep[k], list) or not sweep[k]:
            raise ConfigError(f"sweep.{k}", "must be a non-empty list of values")
        section, _, key = k.partition(".")
        if section not in SECTIONS or key not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
            raise ConfigError(f"sweep.{k}", "must name a section.key of the config")
    configs = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        r = copy.deepcopy(raw)
        for k, v in zip(keys, combo):
            section, _, key = k.partition(".")
            r.setdefault(section, {})[key] = v
        configs.append(from_dict(r, base_dir))
    ids = [c.config_id for c in configs]
    if len(set(ids)) != len(ids):
        raise ConfigError("sweep", "two combinations give the same experiment")
    return configs


def load(path: str | Path | None = None, overrides: list[str] = ()) -> list[Config]:
    """Load a TOML file (or the built-in default when ``path`` is None), apply ``--set``
    overrides and expand sweeps. Raises ``ConfigError`` with a one-line message."""
    if path is None:
        raw, base = parse_toml(default_toml(), "default config"), Path.cwd()
    else:
        raw, base = read_toml(path), Path(path).resolve().parent
    return expand(apply_overrides(raw, list(overrides)), base)


def load_one(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Like ``load`` for a config without sweeps."""
    configs = load(path, overrides)
    if len(configs) != 1:
        raise ConfigError("sweep", f"expected one experiment, the config expands to {len(configs)}")
    return configs[0]
