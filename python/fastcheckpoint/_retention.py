"""Retention: a saver's TTL settings and the prune strategies, in the
vocabulary of LangGraph's checkpointer configuration (langgraph.json's
``"checkpointer": {"ttl": ...}``, the Agent Server's ``ThreadTTLConfig``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastcheckpoint.errors import ConfigError

# The Agent Server's gRPC checkpointer API names "delete" "delete_all".
_STRATEGIES = {"delete": "delete", "delete_all": "delete", "keep_latest": "keep_latest"}
_TTL_KEYS = ("default_ttl", "ttl", "strategy", "sweep_interval_minutes", "sweep_limit")


def prune_strategy(strategy: str) -> str:
    """``"keep_latest"`` or ``"delete"`` for a strategy LangGraph may send
    (``"delete_all"`` is the Agent Server's name for ``"delete"``).

    Raises:
        ValueError: for any other strategy.
    """
    try:
        return _STRATEGIES[strategy]
    except (KeyError, TypeError):
        raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'") from None


@dataclass(frozen=True)
class Retention:
    """A saver's TTL: a thread not written for ``ttl`` seconds expires; its
    checkpoints are then deleted (``strategy="delete"``) or all but the latest
    per namespace (``"keep_latest"``). Sweeps run after a put once
    ``sweep_interval`` seconds have passed since the last one, and handle at
    most ``sweep_limit`` threads each (None: all that expired)."""

    ttl: float
    strategy: str = "delete"
    sweep_interval: float = 300.0
    sweep_limit: int | None = None

    @classmethod
    def of(cls, ttl: Mapping[str, Any] | Retention | None) -> Retention | None:
        """Parses a saver's ``ttl=`` argument.

        Args:
            ttl: ``{"default_ttl": minutes, "strategy": "delete" | "keep_latest",
                "sweep_interval_minutes": minutes, "sweep_limit": threads}`` (the
                keys of LangGraph's checkpointer TTL configuration; ``"ttl"`` is
                accepted for ``"default_ttl"``, ``"delete_all"`` for ``"delete"``),
                or None. ``default_ttl`` is required; None there means no TTL, as
                on the server.

        Returns:
            The settings, or None when no TTL applies.

        Raises:
            ConfigError: for an unknown key or a value out of range.
        """
        if ttl is None or isinstance(ttl, Retention):
            return ttl
        if not isinstance(ttl, Mapping):
            raise ConfigError(f"ttl must be a dict like {{'default_ttl': 60}} or None, not {ttl!r}")
        unknown = set(ttl) - set(_TTL_KEYS)
        if unknown:
            raise ConfigError(f"unknown ttl settings {sorted(unknown)}: use {', '.join(_TTL_KEYS)}")
        if "default_ttl" not in ttl and "ttl" not in ttl:
            raise ConfigError("ttl needs 'default_ttl' (minutes; None for no TTL)")
        minutes = ttl.get("default_ttl", ttl.get("ttl"))
        if minutes is None:
            return None
        interval = ttl.get("sweep_interval_minutes")
        interval = 5 if interval is None else interval
        limit = ttl.get("sweep_limit")
        for name, value in (("default_ttl", minutes), ("sweep_interval_minutes", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"ttl[{name!r}] must be a positive number of minutes, not {value!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"ttl['sweep_limit'] must be a positive number of threads, not {limit!r}")
        try:
            strategy = prune_strategy(ttl.get("strategy", "delete"))
        except ValueError:
            raise ConfigError(f"ttl['strategy'] must be 'delete' or 'keep_latest', not {ttl['strategy']!r}") from None
        return cls(ttl=float(minutes) * 60, strategy=strategy, sweep_interval=float(interval) * 60, sweep_limit=limit)
