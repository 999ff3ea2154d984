"""Data: reading interactions and item text, the leave-one-out and 3:1:1 splits, and batching.

- ``config``: the recipe's ``data`` section (``DataConfig``).
- ``readers``: table, RecBole and Amazon files -> the same raw frames.
- ``sequences``: k-core filtering, chronological sequences, leave-one-out splits (``SequentialData``).
- ``item_sets``: DMRec's random 3:1:1 split of each user's items and the Mult-VAE collator.
- ``collator``: rows of item indices -> SID-T5 inputs and labels.
- ``item_table``: the raw ids and titles saved beside a model (``items.jsonl``).
"""

from .collator import NextItemCollator, SemanticIDCollator
from .config import DataConfig
from .item_sets import ItemSetCollator, random_split
from .item_table import ITEMS_FILE, USERS_FILE, read_item_table, read_user_table, write_item_table, write_user_table
from .readers import DataFormatError, RawData
from .sequences import SequentialData, UserSequences, k_core, load_sequential_data, require_training_examples

__all__ = [
    "ITEMS_FILE",
    "USERS_FILE",
    "DataConfig",
    "DataFormatError",
    "ItemSetCollator",
    "RawData",
    "NextItemCollator",
    "SemanticIDCollator",
    "SequentialData",
    "UserSequences",
    "k_core",
    "load_sequential_data",
    "require_training_examples",
    "random_split",
    "read_item_table",
    "read_user_table",
    "write_item_table",
    "write_user_table",
]
