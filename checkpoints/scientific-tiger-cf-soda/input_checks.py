"""The one set of checks for what users pass in: item ids, histories, counts.

Every public entry (``recommend`` of each model, ``Recommender``, the CLI, the ``evaluate`` module,
recipe loading) checks its arguments here, so the same mistake gets the same message everywhere and
nothing is coerced in silence: ``7.5`` is not item 7, ``True`` is not item 1, a flat list is not a
batch of one. Integers are exact integers: Python ``int``, NumPy integers and integer tensors; a bool
or a float is refused even when it has an integral value (``10.0``), since a float id is almost
always a parsing accident upstream (a CSV read with missing values, a JSON number).

Hub-portable (imports ``torch`` only), so ``modeling/`` can use it when loaded as remote code.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

INT64_MAX = 2**63 - 1


def is_exact_int(value: Any) -> bool:
    """Whether ``value`` is an integer by type (int, NumPy integer, 0-d integer tensor), never a bool."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # NumPy's bool is not an Integral either
        return False
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_floating_point() and value.dtype != torch.bool
    return isinstance(value, numbers.Integral)


def check_count(value: Any, name: str, unit: str = "", minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is a whole number ``>= minimum``; otherwise a ``ValueError`` naming ``name``.

    ``unit`` says what is counted (``"items"`` gives "top_k must be a positive number of items").
    """
    if not is_exact_int(value) or int(value) < minimum:
        if minimum == 1:
            what = f"a positive number of {unit}" if unit else "a positive whole number"
        else:
            what = f"a whole number >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_item_index(value: Any, where: str, num_items: int | None = None) -> int:
    """One item index: an exact integer in ``0..num_items - 1`` (when ``num_items`` is known)."""
    if not is_exact_int(value):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = (
                f"; if {int(value)} was meant, convert the ids to int where they are read (a float id is not rounded)"
            )
        elif isinstance(value, str):
            hint = "; raw item ids as strings go through sidrec.Recommender or the CLI, which map them to indices"
        raise ValueError(f"{where}: item id {value!r} is a {type(value).__name__}, not an integer index{hint}")
    index = int(value)
    upper = num_items - 1 if num_items is not None else INT64_MAX
    if index < 0 or index > upper:
        catalogue = f"items 0..{num_items - 1}" if num_items is not None else "non-negative 64-bit indices"
        raise ValueError(
            f"{where}: Unknown item id {index}: this catalogue holds {catalogue}. Map raw ids to item indices with "
            "the data set's item table (sidrec.Recommender takes raw ids and does it)"
        )
    return index


def empty_history_message(row: int) -> str:
    """What every entry says about an empty history (the same words from the model, the Recommender and the CLI)."""
    return (
        f"History {row} is empty: a user needs at least one interacted item to get recommendations. "
        "Fall back to the popularity ranking for cold-start users"
    )


def _is_sequence(value: Any) -> bool:
    """A list, tuple or array of values (a NumPy array: ``tolist`` and a dtype), never a string."""
    if isinstance(value, (str, bytes)):
        return False
    return isinstance(value, Sequence) or (
        hasattr(value, "tolist") and hasattr(value, "dtype") and hasattr(value, "__len__")
    )


def check_histories(histories: Any, num_items: int | None = None, name: str = "histories") -> list[list[int]]:
    """A batch of histories as a list of lists of item indices, every id checked; refuses what is not one.

    Accepts a sequence of sequences (lists, tuples, 1-d integer tensors or arrays) or a 2-d integer tensor.
    A flat list of ids, a string, an empty batch and an empty history are errors that say what to pass.
    """
    if isinstance(histories, torch.Tensor):
        if histories.dim() != 2 or histories.is_floating_point() or histories.dtype == torch.bool:
            raise ValueError(
                f"{name} as a tensor must be 2-d of integer item ids (users x items), got "
                f"{tuple(histories.shape)} {histories.dtype}"
            )
        histories = histories.tolist()
    if not _is_sequence(histories):
        raise ValueError(f"{name} must be a list of histories (lists of item ids), got {type(histories).__name__}")
    if len(histories) == 0:
        raise ValueError(f"{name} is an empty batch: pass at least one history, e.g. [[12, 40, 7]]")
    checked = []
    for row, history in enumerate(histories):
        if is_exact_int(history) or isinstance(history, float):
            raise ValueError(
                f"{name} must be a list of histories, but entry {row} is the single id {history!r}: for one "
                f"history pass [[...]], e.g. [{list(histories)[:3]!r}]"
            )
        if not _is_sequence(history):
            raise ValueError(f"history {row} must be a list of item ids, got {type(history).__name__} {history!r}")
        items = history.tolist() if hasattr(history, "tolist") else list(history)
        if len(items) == 0:
            raise ValueError(empty_history_message(row))
        checked.append([check_item_index(item, f"history {row}", num_items) for item in items])
    return checked


def check_ranked_list(items: Sequence[Any], where: str) -> list[int]:
    """A ranked list of item indices (best first): exact integers, ``-1`` for an empty slot, no repeats."""
    ranked = []
    for value in items:
        if not is_exact_int(value):
            raise ValueError(f"{where}: ranked item {value!r} is a {type(value).__name__}, not an integer index")
        ranked.append(int(value))
    real = [item for item in ranked if item != -1]
    if any(item < -1 for item in ranked):
        raise ValueError(f"{where}: item indices are >= 0 (-1 marks an empty slot), got {min(ranked)}")
    if len(set(real)) != len(real):
        repeated = sorted({item for item in real if real.count(item) > 1})
        raise ValueError(
            f"{where}: item(s) {repeated[:5]} appear more than once in one ranked list; a ranking lists each item "
            "once (a repeat would count one hit several times): remove the repeats"
        )
    return ranked
