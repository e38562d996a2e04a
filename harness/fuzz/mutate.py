"""Mutations of real inputs: the shapes of damage a relay, a disk or an editor produce.

Text-level (numbers made 0, negative, huge or non-numeric; tokens and list elements dropped,
duplicated or swapped; truncation; bit flips; stray characters) and structure-level (a
parsed JSON or TOML value with one leaf replaced or one key dropped or added). Every
mutation is drawn from the ``random.Random`` given, so a seed repeats a run exactly.
"""

from __future__ import annotations

import random
import re
from typing import Any

# what a number in a field becomes
NUMBERS = ("0", "-1", "-0", "1", "2147483648", "-2147483649", "18446744073709551616",
           "99999999999999999999999999999999", "1e309", "-1e309", "nan", "inf", "0x", "0x1p+99999",
           "0x1p-1080", "-0x1p+0", "1.5", "x", "", "٣", "0b1", "1_0", " 1")
# what any leaf of a structure becomes
LEAVES: tuple[Any, ...] = (0, -1, 1, 2**63, -(2**63) - 1, 10**40, 1e309, float("nan"), 0.5, -0.0, "", "x",
                           "0", "~nobody-here/x", "/", "a b", "\x00", True, False, None, [], {}, [1, "a"],
                           {"a": 1})
STRAY = ("\x00", "\t", "\r", "\n", "\x7f", "\ufeff", "é", "\udcff", "=", ":", ",", "/", " ", "'", '"',
         "[", "]", "{", "}", "#", "\\")
_NUMBER = re.compile(r"-?0x[0-9a-fA-F.]+p[+-]?\d+|-?\d+")
_SEPARATORS = ",:/ "


def _number(rng: random.Random, text: str) -> str:
    spans = [m.span() for m in _NUMBER.finditer(text)]
    if not spans:
        return text
    a, b = rng.choice(spans)
    return text[:a] + rng.choice(NUMBERS) + text[b:]


def _elements(rng: random.Random, text: str) -> str:
    """Drop, duplicate or swap one element at one separator level (space, comma, colon, slash)."""
    sep = rng.choice([s for s in _SEPARATORS if s in text] or [" "])
    parts = text.split(sep)
    if len(parts) < 2:
        return text
    i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
    op = rng.randrange(3)
    if op == 0:
        del parts[i]
    elif op == 1:
        parts.insert(i, parts[j])
    else:
        parts[i], parts[j] = parts[j], parts[i]
    return sep.join(parts)


def _key(rng: random.Random, text: str) -> str:
    """A key=value token with its value emptied, its key renamed, or its '=' gone."""
    tokens = text.split(" ")
    idx = [k for k, t in enumerate(tokens) if "=" in t]
    if not idx:
        return text
    k = rng.choice(idx)
    key, _, value = tokens[k].partition("=")
    tokens[k] = rng.choice([f"{key}=", f"{key.lower()}={value}", f"{key}{value}", f"={value}",
                            f"{key}={value}={value}", f"{key}=={value}", f"X{key}={value}"])
    return " ".join(tokens)


def _field_value(rng: random.Random, text: str) -> str:
    """One key=value token's whole value made 0, negative, huge or not a number (TICKLEN=0)."""
    tokens = text.split(" ")
    idx = [k for k, t in enumerate(tokens) if "=" in t]
    if not idx:
        return _number(rng, text)
    k = rng.choice(idx)
    tokens[k] = tokens[k].partition("=")[0] + "=" + rng.choice(NUMBERS)
    return " ".join(tokens)


def _truncate(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text) + 1)]


def _stray(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(STRAY) * rng.choice((1, 1, 2, 50)) + text[i:]


def _bitflip(rng: random.Random, text: str) -> str:
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    if not data:
        return text
    for _ in range(rng.choice((1, 1, 2, 8))):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data.decode("utf-8", "surrogateescape")


TEXT_MUTATIONS = (_number, _number, _field_value, _field_value, _elements, _elements, _key, _truncate, _stray, _bitflip)


def mutate_text(rng: random.Random, text: str, rounds: int | None = None) -> str:
    """One to four text mutations of ``text``."""
    for _ in range(rounds if rounds is not None else rng.choice((1, 1, 1, 2, 2, 3, 4))):
        text = rng.choice(TEXT_MUTATIONS)(rng, text)
    return text


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) into a nested dict/list, the containers' own included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def mutate_structure(rng: random.Random, value: Any, rounds: int | None = None) -> Any:
    """A deep copy of a JSON/TOML value with one to three leaves replaced or keys dropped/added."""
    import copy

    value = copy.deepcopy(value)
    for _ in range(rounds if rounds is not None else rng.choice((1, 1, 2, 3))):
        path = rng.choice(_paths(value))
        if not path:
            continue
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = rng.randrange(5)
        if op == 0 and isinstance(parent, dict):
            del parent[last]
        elif op == 1 and isinstance(parent, dict):
            parent[rng.choice(("extra", str(last).upper(), f"{last}_x", ""))] = rng.choice(LEAVES)
        elif op == 2 and isinstance(parent[last], str):
            parent[last] = mutate_text(rng, parent[last], 1)
        elif op == 3 and isinstance(parent[last], int | float) and not isinstance(parent[last], bool):
            parent[last] = rng.choice((0, -1, -parent[last], parent[last] * 10**12, float(parent[last]),
                                       str(parent[last])))
        else:
            parent[last] = copy.deepcopy(rng.choice(LEAVES))
    return value
