"""Loading rules, budgets and channels from a TOML file (or YAML, when PyYAML is installed).

The file has up to four top-level keys: ``[alerts]`` (``interval``), ``[[rules]]``, ``[[budgets]]`` and
``[[channels]]``; each table takes the same fields as :class:`Rule`, :class:`Budget` or the channel's constructor
(``for`` for ``for_``, ``limit`` for ``limit_usd``, ``type`` for the channel class, ``url_env``/``password_env`` to
read secrets from the environment). Anything unknown raises :class:`ValueError` naming the file and the field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .channels import Channel, channel_from_dict
from .rules import Budget, Rule, parse_duration

SECTIONS = ("alerts", "rules", "budgets", "channels")


@dataclass
class AlertConfig:
    """What a config file defines."""

    rules: list[Rule] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    interval: float | None = None
    """Seconds between evaluations (``[alerts] interval``), if the file sets it."""


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw contents of a ``.toml``, ``.yaml`` or ``.yml`` file."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise ValueError(f"{file}: YAML needs PyYAML (pip install pyyaml); or write the file in TOML") from None
        with file.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        return data if data is not None else {}
    if suffix != ".toml":
        raise ValueError(f"{file}: expected a .toml, .yaml or .yml file")
    with file.open("rb") as handle:
        try:
            return tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{file}: not valid TOML: {exc}") from None


def parse(data: Mapping[str, Any], source: str = "config") -> AlertConfig:
    """An :class:`AlertConfig` from already-read data; errors name ``source``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a table at the top level")
    for key in data:
        if key not in SECTIONS:
            raise ValueError(f"{source}: {key}: unknown section; use {', '.join(SECTIONS)}")
    config = AlertConfig()
    try:
        settings = data.get("alerts", {})
        if not isinstance(settings, Mapping):
            raise ValueError("alerts: expected a table")
        for key, value in settings.items():
            if key != "interval":
                raise ValueError(f"alerts.{key}: unknown setting; use interval")
            config.interval = parse_duration(value, "alerts.interval")
            if config.interval <= 0:
                raise ValueError("alerts.interval: must be more than 0 seconds")
        config.rules = [Rule.from_dict(item) for item in _tables(data, "rules")]
        config.budgets = [Budget.from_dict(item) for item in _tables(data, "budgets")]
        config.channels = [channel_from_dict(item) for item in _tables(data, "channels")]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: {exc}") from None
    return config


def load(path: str | os.PathLike[str]) -> AlertConfig:
    """Read and validate a config file."""
    return parse(read(path), str(path))


def _tables(data: Mapping[str, Any], section: str) -> list[Mapping[str, Any]]:
    items = data.get(section, [])
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"{section}: expected a list of tables ([[{section}]] in TOML)")
    return items
