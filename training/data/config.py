"""Where a data set is and how to cut it: the ``data`` section of a recipe.

Its own module so that the readers and the sequence builder both import it without importing each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Where the data is and how to cut it.

    ``format="auto"`` picks the reader from the files: ``*.inter`` means RecBole, ``interactions.*``
    means a table, JSON files with ``reviewerID`` mean Amazon reviews. ``max_users`` keeps the first
    N users by sorted raw id *before* k-core filtering, so a demo on a slice is still a valid k-core.
    ``drop_last`` leaves out each user's last N interactions *after* filtering and indexing: the same
    users and catalogue as the data stood N interactions per user earlier, which is the snapshot a
    model to be fine-tuned on the newer window is trained on (see ``finetune`` in the recipe).
    ``deduplicate`` keeps each user's first interaction with an item, in every reader alike.
    """

    path: str
    format: str = "auto"
    interactions_file: str | None = None
    items_file: str | None = None
    user_column: str = "user_id"
    item_column: str = "item_id"
    order_column: str | None = "position"
    text_fields: list[str] = field(default_factory=lambda: ["title", "brand", "categories", "description"])
    min_user_interactions: int = 5
    min_item_interactions: int = 5
    max_history: int = 20
    max_users: int | None = None
    drop_last: int = 0
    # Repeated (user, item) rows: every reader keeps a user's first interaction with an item and drops the
    # later ones (the benchmarks' protocol; review dumps repeat reviews), printing how many it dropped.
    # false keeps them, for data where coming back to an item is the behaviour to model.
    deduplicate: bool = True
