"""The dataset card of a data folder pushed to the Hub (``sidrec push-dataset``).

Why it is generated rather than written by hand: the counts on a card must be the counts sidrec gets when
it reads the repository, so the card comes from reading the folder with the very readers and protocol a
recipe uses (:func:`summarize_data_folder`), then :func:`render_dataset_card` lays it out with
``dataset_template.md`` (Jinja, rendered by ``huggingface_hub.DatasetCard.from_template``). What only the
data's authors know (where it came from, its terms) is taken from the folder's own ``README.md``, verbatim.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from ..training.data import DataConfig, load_sequential_data
from ..training.data.readers import READERS, detect_format

DATASET_TEMPLATE_PATH = Path(__file__).parent / "dataset_template.md"
FOLDER_README = "README.md"
TAGS = ["recommendation", "sequential-recommendation", "sidrec"]
SIZE_CATEGORIES = [  # the Hub's size_categories, by the number of interaction rows
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]
_HEADING = re.compile(r"^(#{1,4})(\s)", re.MULTILINE)
_TERMS_HEADING = re.compile(r"^#+\s.*\b(licen[cs]e|terms)\b", re.IGNORECASE | re.MULTILINE)


@dataclass
class DataFile:
    """One file of the folder: its role for the readers, and for the two tables read, rows and columns."""

    name: str
    role: str  # interactions, items, or other (uploaded, not read)
    size_bytes: int
    rows: int | None = None
    columns: list[str] = field(default_factory=list)


@dataclass
class DataSummary:
    """What a data folder holds, as sidrec reads it: the files, the raw counts and the counts after the protocol."""

    name: str
    format: str
    settings: dict
    files: list[DataFile]
    raw: dict[str, int]  # interaction rows, distinct users and items in them, item-table rows
    stats: dict[str, float | int]  # SequentialData.stats() after deduplication and k-core
    sequence_lengths: dict[str, float]
    readme: str | None
    user_column: str
    item_column: str
    order_column: str | None
    text_fields: list[str]  # the configured text fields that the item table has

    @property
    def states_terms(self) -> bool:
        """Whether the folder's README has a licence / terms section (the card points to it)."""
        return bool(self.readme and _TERMS_HEADING.search(self.readme))


def summarize_data_folder(directory: str | Path, data: DataConfig | None = None) -> DataSummary:
    """Read ``directory`` as a recipe with the data settings ``data`` would (defaults: the shipped protocol).

    Raises the readers' own errors (``DataFormatError``, ``FileNotFoundError``) for a folder sidrec cannot
    read, so nothing unreadable is pushed.
    """
    root = Path(directory)
    config = DataConfig(**{**asdict(data or DataConfig(path=str(root))), "path": str(root)})
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a directory; pass a data folder that holds {_layout()} "
            "(e.g. examples/data/amazon2018_scientific_5core)"
        )
    sequential = load_sequential_data(config, verbose=False)  # first: its errors name the setting to change
    fmt = detect_format(root, config) if config.format == "auto" else config.format
    raw = READERS[fmt](config, root)
    interactions = raw.interactions
    files = []
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.name == raw.interactions_name:
            files.append(
                DataFile(path.name, "interactions", path.stat().st_size, len(interactions), _names(interactions))
            )
        elif path.name == raw.items_name and raw.items is not None:
            files.append(DataFile(path.name, "items", path.stat().st_size, len(raw.items), _names(raw.items)))
        elif path.name != FOLDER_README:
            files.append(DataFile(path.name, "other", path.stat().st_size))
    lengths = sequential.sequences.lengths  # interactions per user, after the protocol
    readme = root / FOLDER_README
    return DataSummary(
        name=root.resolve().name,
        format=fmt,
        settings={key: value for key, value in asdict(config).items() if key != "path"},
        files=files,
        raw={
            "interactions": len(interactions),
            "users": int(interactions[raw.user].nunique()),
            "items": int(interactions[raw.item].nunique()),
            "item_rows": len(raw.items) if raw.items is not None else 0,
        },
        stats=sequential.stats(),
        sequence_lengths={"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())},
        readme=readme.read_text(encoding="utf-8") if readme.is_file() else None,
        user_column=raw.user,
        item_column=raw.item,
        order_column=raw.order,
        text_fields=[name for name in config.text_fields if raw.items is not None and name in raw.items.columns],
    )


def render_dataset_card(summary: DataSummary, repo_id: str, license: str = "unknown") -> DatasetCard:
    """The card: YAML header (licence, task, size, tags, ``datasets`` configs) and the body the template lays out.

    ``license`` is a Hub licence identifier (``cc-by-4.0``, ``mit``, ``other``, ...); the default ``unknown``
    claims nothing, and the body then points to the terms in the folder's README, or says none were given.
    """
    tables = [  # (role, file, `datasets` builder): CSV / Parquet / JSON Lines load with `datasets` as they are
        (file.role, file.name, datasets_builder(file.name))
        for file in summary.files
        if summary.format == "table" and file.role in ("interactions", "items")
    ]
    configs = None
    if tables and len({builder for _, _, builder in tables}) == 1:
        # `datasets` infers one builder for all of a repository's configs: only same-format tables get configs
        # (which the Hub's viewer shows); the card's snippet names each file's builder, so it works either way.
        configs = [
            {"config_name": role, "data_files": name, **({"default": True} if role == "interactions" else {})}
            for role, name, _ in tables
        ]
    card_data = DatasetCardData(
        license=license,
        pretty_name=summary.name,
        task_categories=["other"],  # the Hub lists no recommendation task
        size_categories=[size_category(summary.raw["interactions"])],
        tags=TAGS,
        configs=configs,
    )
    context = {
        "summary": summary,
        "repo_id": repo_id,
        "license": license,
        "files": summary.files,
        "tables": tables,
        "readme": demote_headings(summary.readme) if summary.readme else None,
    }
    return DatasetCard.from_template(card_data, template_path=str(DATASET_TEMPLATE_PATH), **context)


def datasets_builder(name: str) -> str:
    """The ``datasets`` packaged builder that reads a table file: csv, parquet or json (JSON Lines)."""
    lowered = name.lower()
    if lowered.endswith((".csv", ".csv.gz")):
        return "csv"
    return "parquet" if lowered.endswith(".parquet") else "json"


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for a number of rows."""
    for limit, name in SIZE_CATEGORIES:
        if rows < limit:
            return name
    return "n>1B"


def demote_headings(text: str) -> str:
    """Markdown headings two levels deeper (``#`` -> ``###``), outside code fences, so a README nests under the
    card's own ``##`` section."""
    parts = re.split(r"(^```.*?^```)", text, flags=re.MULTILINE | re.DOTALL)
    return "".join(part if part.startswith("```") else _HEADING.sub(r"##\1\2", part) for part in parts).strip()


def _names(frame) -> list[str]:
    return [str(column) for column in frame.columns]


def _layout() -> str:
    return "interactions.* and items.* (or RecBole .inter/.item files, or Amazon review JSON)"
