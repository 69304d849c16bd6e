"""Turning checkpoints into text a person reads, or JSON a script reads."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Channels LangGraph uses for its own bookkeeping: hidden unless asked for.
_INTERNAL_PREFIXES = ("branch:", "__", "start:", "join:")


def user_channels(values: Mapping[str, Any], all_channels: bool) -> dict[str, Any]:
    return {k: v for k, v in values.items() if all_channels or not k.startswith(_INTERNAL_PREFIXES)}


def jsonable(value: Any) -> Any:
    """``value`` as JSON-compatible data (messages and models as their fields)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)) or type(value).__name__ == "deque":
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if hasattr(value, "model_dump"):
        try:
            return jsonable(value.model_dump())
        except Exception:  # a model that cannot dump itself: fall back to its repr
            return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "_asdict"):
        return jsonable(value._asdict())
    return str(value)


def dumps(data: Any) -> str:
    return json.dumps(jsonable(data), indent=2, ensure_ascii=False)


def _is_message(value: Any) -> bool:
    return hasattr(value, "content") and hasattr(value, "type") and hasattr(value, "model_dump")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal: text parts, other parts by type
        return " ".join(
            p if isinstance(p, str) else p.get("text") or f"[{p.get('type', '?')}]" if isinstance(p, dict) else str(p)
            for p in content
        )
    return str(content)


def _short(text: str, width: int | None) -> str:
    text = " ".join(text.split())
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def message_line(msg: Any, width: int | None) -> str:
    """``role: text`` (tool calls and the tool a result answers, in brackets)."""
    role = {"human": "human", "ai": "ai", "tool": "tool", "system": "system"}.get(msg.type, msg.type)
    extra = ""
    calls = getattr(msg, "tool_calls", None)
    if calls:
        extra = " [calls " + ", ".join(f"{c.get('name')}({json.dumps(c.get('args'))})" for c in calls) + "]"
    if msg.type == "tool" and getattr(msg, "name", None):
        role = f"tool {msg.name}"
    return _short(f"{role}: {_text(msg.content)}{extra}", width)


def value_lines(value: Any, width: int | None) -> list[str]:
    """A channel value as indented lines: messages one per line, else JSON."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and value and all(map(_is_message, value)):
        return [message_line(m, width) for m in value]
    if _is_message(value):
        return [message_line(value, width)]
    text = json.dumps(jsonable(value), ensure_ascii=False, default=str)
    return [_short(text, width)]


def element_lines(items: Sequence[Any], width: int | None) -> list[str]:
    return [message_line(x, width) if _is_message(x) else _short(json.dumps(jsonable(x)), width) for x in items]


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per changed channel: for lists, the common prefix length and what was
    removed / added after it; otherwise the two values."""
    out: dict[str, dict[str, Any]] = {}
    for ch in sorted(set(a) | set(b)):
        old, new = a.get(ch), b.get(ch)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            keep = 0
            while keep < min(len(old), len(new)) and old[keep] == new[keep]:
                keep += 1
            out[ch] = {"kept": keep, "removed": old[keep:], "added": new[keep:]}
        else:
            out[ch] = {"from": old, "to": new}
    return out


def next_nodes(checkpoint: Mapping[str, Any], has_value: Callable[[str, Any], bool]) -> list[str]:
    """Nodes this checkpoint triggers: a node runs when its trigger channel
    (``branch:to:NODE``, or ``__start__``) holds a value at a version the node
    has not seen (a consumed trigger gets a new version but no value)."""
    versions = checkpoint.get("channel_versions", {})
    seen = checkpoint.get("versions_seen", {})
    out = []
    for ch, ver in versions.items():
        node = "__start__" if ch == "__start__" else ch[len("branch:to:") :] if ch.startswith("branch:to:") else None
        if node is None or not has_value(ch, ver):
            continue
        last = seen.get(node, {}).get(ch)
        if last is None or _version_key(ver) > _version_key(last):
            out.append(node)
    return sorted(out)


def writers(checkpoint: Mapping[str, Any], parent: Mapping[str, Any] | None) -> list[str]:
    """Nodes that ran in the step that produced this checkpoint (their
    ``versions_seen`` changed since the parent)."""
    seen = checkpoint.get("versions_seen", {})
    before = (parent or {}).get("versions_seen", {})
    return sorted(n for n, v in seen.items() if n != "__input__" and v != before.get(n))


def _version_key(v: Any) -> tuple[float, str]:
    if isinstance(v, (int, float)):
        return (float(v), "")
    head = str(v).split(".")[0]
    try:
        return (float(head), str(v))
    except ValueError:
        return (0.0, str(v))


def when(ts: float | str | None) -> str:
    """A local time for a row's ``created_at`` (seconds) or a checkpoint's ISO ``ts``."""
    if ts is None or ts == "":
        return "-"
    if isinstance(ts, str):
        try:
            dt = datetime.datetime.fromisoformat(ts)
        except ValueError:
            return ts
    else:
        dt = datetime.datetime.fromtimestamp(float(ts), datetime.timezone.utc)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Plain aligned columns (``right``: indexes of right-aligned columns)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
