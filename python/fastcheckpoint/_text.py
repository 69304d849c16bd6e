"""Seeded text that compresses like natural language, for the demo's timing,
the benchmarks and the tests.

Repeated phrases ("please look this up for me " * 11) compress ~30x and
flatter every size and speed figure. Here words are drawn with Zipf weights (exponent 0.9)
from a 3,000-word vocabulary of made-up words (syllables of English-like
shape), in sentences of varied length, and every message has its own seed, so
no two messages share their text. zstd shrinks it about 2.5-3x, as it does
real prose.
"""

from __future__ import annotations

import itertools
import random

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr", "pl", "ch", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "io"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck"]


def _vocabulary(size: int = 3000) -> list[str]:
    rng = random.Random(20261130)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.choice((1, 1, 2, 2, 3)))
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


VOCABULARY = _vocabulary()
_CUMULATIVE = list(itertools.accumulate((rank + 1) ** -0.9 for rank in range(len(VOCABULARY))))


def prose(seed: int | str, chars: int) -> str:
    """About ``chars`` characters of sentences, the same for the same seed."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        n = rng.randint(4, 22)
        words = rng.choices(VOCABULARY, cum_weights=_CUMULATIVE, k=n)
        sentence = " ".join(words).capitalize() + rng.choice(".......?!") + " "
        if rng.random() < 0.15:
            sentence = sentence.replace(" ", ", ", 1)
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:chars].rstrip()


def turn_messages(turn: int, thread: str = "") -> list[AnyMessage]:
    """One ReAct turn of natural-like text: human (~300 chars),
    AI tool call, tool result (~1,500), AI answer (~600). Unique per turn and thread."""
    call = {
        "name": "search",
        "args": {"query": prose(f"{thread}q{turn}", 40)},
        "id": f"call_{turn}",
        "type": "tool_call",
    }
    return [
        HumanMessage(prose(f"{thread}h{turn}", 300), id=f"h{turn}"),
        AIMessage(
            "",
            tool_calls=[call],
            id=f"a{turn}",
            usage_metadata={"input_tokens": 9, "output_tokens": 4, "total_tokens": 13},
        ),
        ToolMessage(prose(f"{thread}t{turn}", 1500), tool_call_id=f"call_{turn}", id=f"t{turn}"),
        AIMessage(prose(f"{thread}f{turn}", 600), id=f"f{turn}"),
    ]


def raw_text_bytes(messages: list[AnyMessage]) -> int:
    """UTF-8 bytes of the messages' text (contents and tool-call arguments):
    what a database of the thread is measured against."""
    total = 0
    for m in messages:
        total += len(str(m.content).encode())
        for call in getattr(m, "tool_calls", None) or []:
            total += len(str(call["args"]).encode())
    return total
