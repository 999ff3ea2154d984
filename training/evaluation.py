"""Rank every evaluation user over the full catalogue and score the ranking."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .metrics import ranking_metrics


def rank_users(
    model,
    tokenizer,
    histories: list[list[int]],
    users: list[int] | None = None,
    top_k: int = 20,
    num_beams: int = 20,
    batch_size: int = 256,
    progress: bool = True,
    description: str = "ranking",
) -> torch.LongTensor:
    """(U, top_k) items per user from the model's trie-constrained beam search (``recommend``)."""
    ranked = []
    starts = range(0, len(histories), batch_size)
    for start in tqdm(starts, desc=description, disable=not progress, leave=False):
        chunk_users = users[start : start + batch_size] if users is not None else None
        result = model.recommend(
            histories[start : start + batch_size],
            tokenizer,
            top_k=top_k,
            num_beams=num_beams,
            users=chunk_users,
            batch_size=batch_size,
        )
        ranked.append(result.items)
    return torch.cat(ranked)


def evaluate_split(
    model,
    tokenizer,
    split,
    ks: tuple[int, ...] = (5, 10, 20),
    num_beams: int = 20,
    batch_size: int = 256,
    max_users: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Recall/NDCG@ks of ``model`` on a validation or test split (columns user, history, target).

    ``max_users`` evaluates the first users only: a cheaper signal for early stopping; final
    numbers always use every user.
    """
    if max_users is not None:
        split = split.select(range(min(max_users, len(split))))
    columns = split.to_dict()
    ranked = rank_users(
        model,
        tokenizer,
        columns["history"],
        users=columns.get("user"),
        top_k=max(ks),
        num_beams=num_beams,
        batch_size=batch_size,
        progress=progress,
    )
    return ranking_metrics(ranked, torch.tensor(columns["target"]), ks)
