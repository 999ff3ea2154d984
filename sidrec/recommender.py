"""``Recommender``: a saved run's model directory as a small Python API over raw item ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModel, AutoTokenizer

from .training.data.item_table import ITEMS_FILE, read_item_table


@dataclass
class Recommendation:
    rank: int
    item_id: str
    title: str
    score: float


class Recommender:
    """Model + tokenizer + item table of a saved run, speaking raw item ids.

    ``Recommender.from_pretrained("runs/demo/model").recommend(["12", "40"], top_k=10)`` returns
    :class:`Recommendation` rows. Raw ids are those of the data set (the ``item_id`` column).
    """

    def __init__(self, model, tokenizer, item_ids: list[str], titles: list[str]):
        self.model = model
        self.tokenizer = tokenizer
        self.item_ids = item_ids
        self.titles = titles
        self.index_of = {raw: index for index, raw in enumerate(item_ids)}

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Recommender:
        directory = Path(directory)
        if not (directory / "config.json").exists():
            raise FileNotFoundError(
                f"{directory} is not a saved sidrec model (no config.json); pass the run's model directory, "
                "e.g. runs/demo/model"
            )
        model = AutoModel.from_pretrained(str(directory))
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        table = read_item_table(directory)
        if table is not None:
            item_ids, titles = table
        else:  # no item table: raw ids are the indices
            item_ids = [str(i) for i in range(tokenizer.num_items)]
            titles = [""] * tokenizer.num_items
        return cls(model.eval(), tokenizer, item_ids, titles)

    def to_indices(self, history: list[str | int]) -> list[int]:
        unknown = [raw for raw in history if str(raw) not in self.index_of]
        if unknown:
            raise ValueError(
                f"unknown item id(s) {unknown[:5]}: not in this model's catalogue of {len(self.item_ids)} items "
                f"(see {ITEMS_FILE} in the model directory for valid ids)"
            )
        return [self.index_of[str(raw)] for raw in history]

    def recommend(
        self, history: list[str | int], top_k: int = 10, num_beams: int | None = None
    ) -> list[Recommendation]:
        """Top-``top_k`` items for one history of raw item ids (oldest first)."""
        result = self.model.recommend([self.to_indices(history)], self.tokenizer, top_k=top_k, num_beams=num_beams)
        return [
            Recommendation(rank=rank, item_id=self.item_ids[item], title=self.titles[item], score=score)
            for rank, (item, score) in enumerate(zip(result.items[0].tolist(), result.scores[0].tolist()), start=1)
            if item >= 0
        ]
