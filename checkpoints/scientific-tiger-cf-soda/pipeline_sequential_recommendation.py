"""The ``sequential-recommendation`` pipeline: a user's history of raw item ids (or titles) in, items out.

``transformers.pipeline(model="runs/demo/model", trust_remote_code=True)("10", ...)`` serves any saved
sequential model of sidrec (SID-T5 and its variants, DMRec-T5, SASRec) the way every other Hugging Face
task is served: one history in gives one list of ``{"item_id", "title", "score"}``, a batch of histories
gives one list per history. It ranks through :class:`~.raw_id_recommender.RawIdRecommender`, the core
``sidrec.Recommender`` serves through, so a request gets the same checks, messages, items and scores.

Every model directory a run saves carries this file and names it in ``config.json`` (``custom_pipelines``),
so the pipeline loads where sidrec is not installed; importing sidrec registers the task with
``transformers.pipelines.PIPELINE_REGISTRY`` as well.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

from transformers import Pipeline
from transformers.dynamic_module_utils import custom_object_save

from .id_tables import ITEMS_FILE, USERS_FILE, item_table_of, read_table, write_table
from .input_checks import is_exact_int
from .outputs import Recommendations
from .raw_id_recommender import ITEM_RANKERS, RawIdRecommender

TASK = "sequential-recommendation"
HISTORY_FORMS = ("item_id", "title")  # what the entries of a history are: raw item ids, or item titles


def _is_list_like(value: Any) -> bool:
    """A list, tuple or 1-d array of ids (never a string): what one history is."""
    if isinstance(value, (list, tuple)):
        return True
    return hasattr(value, "tolist") and getattr(value, "ndim", 0) >= 1


def _read_table(model, filename: str, key: str) -> list[dict] | None:
    """Rows of a JSON-lines table saved beside the model (its local folder, or the Hub repository it came from).

    None when the model has no such file. A damaged line is an error that names the file, the line and the fix.
    """
    source = str(getattr(model, "name_or_path", "") or "")
    if not source:
        return None
    if os.path.isdir(source):
        path = os.path.join(source, filename)
        if not os.path.isfile(path):
            return None
    else:  # a Hub repository id; its default revision, since a loaded model does not say which revision it is
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = hf_hub_download(source, filename)
        except EntryNotFoundError:
            return None
    return read_table(path, key)


def raw_id_recommender(
    model,
    tokenizer=None,
    item_table: tuple[list[str], list[str]] | None = None,
    user_ids: list[str] | None = None,
) -> RawIdRecommender:
    """The serving core for a loaded model: its item table from the tokenizer or ``items.jsonl`` beside it.

    ``item_table`` (raw ids, titles by item index) and ``user_ids`` (raw user ids by user index) override
    what the model directory holds; a model that decodes semantic IDs needs its tokenizer.
    """
    model_type = getattr(model.config, "model_type", None)
    ranks_items = model_type in ITEM_RANKERS
    if ranks_items:
        tokenizer = None  # SASRec scores item ids itself
    elif tokenizer is None:
        raise ValueError(
            f"this {model_type} model decodes semantic IDs and needs the tokenizer saved with it, but none was "
            "loaded: copy the whole model directory again (tokenizer_config.json, item_codes.safetensors), or pass "
            "tokenizer=AutoTokenizer.from_pretrained(<model directory>)"
        )
    num_items = model.config.num_items if ranks_items else tokenizer.num_items
    ids_are_indices = False
    if item_table is None and tokenizer is not None and getattr(tokenizer, "item_ids", None) is not None:
        item_table = (tokenizer.item_ids, tokenizer.item_titles)
    if item_table is None:
        rows = _read_table(model, ITEMS_FILE, "item_id")
        if rows is not None:
            item_table = item_table_of(rows)
    if item_table is None:
        if ranks_items:
            raise ValueError(
                f"the model has no {ITEMS_FILE} beside it: SASRec speaks raw item ids only through that table; copy "
                "the whole model directory again, or pass item_table=(item_ids, titles)"
            )
        warnings.warn(
            f"the model has no {ITEMS_FILE} (a model saved before sidrec's tokenizer carried its raw ids): item ids "
            f"are taken as the catalogue's indices 0..{num_items - 1} and no titles are shown",
            UserWarning,
            stacklevel=3,
        )
        item_table, ids_are_indices = ([str(i) for i in range(num_items)], [""] * num_items), True
    item_ids, titles = list(item_table[0]), list(item_table[1])
    if len(item_ids) != num_items or len(titles) != len(item_ids):
        raise ValueError(
            f"the item table lists {len(item_ids)} items and {len(titles)} titles but the model ranks {num_items} "
            f"items: {ITEMS_FILE} was edited or comes from another run; copy the whole model directory again"
        )
    if user_ids is None and getattr(tokenizer, "num_user_buckets", 0):
        rows = _read_table(model, USERS_FILE, "user_id")
        user_ids = [str(row["user_id"]) for row in rows] if rows is not None else None
    return RawIdRecommender(model, tokenizer, item_ids, titles, user_ids, ids_are_indices=ids_are_indices)


class SequentialRecommendationPipeline(Pipeline):
    """Next items for users' histories, as ``{"item_id", "title", "score"}`` dicts (best first).

    ``pipe(["B00X", "B01Y"])`` ranks for one history of raw item ids (oldest first) and returns one list;
    ``pipe([["B00X"], ["B01Y", "B02Z"]])`` ranks a batch and returns one list per history.
    ``by="title"`` takes item titles instead of ids (each must name exactly one item). ``user`` (one raw user
    id, or a list with one per history) serves a model trained with a user token as it was evaluated.
    ``top_k`` (default 10), ``exclude_history`` (default False, as evaluated) and ``num_beams`` (beam models
    only) are those of ``sidrec.Recommender.recommend``; any of them may be set when the pipeline is built.
    """

    _load_tokenizer = None  # SID-T5 and DMRec-T5 have one; SASRec has none
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(
        self,
        model,
        tokenizer=None,
        item_table: tuple[list[str], list[str]] | None = None,
        user_ids: list[str] | None = None,
        **kwargs,
    ):
        super().__init__(model=model, tokenizer=tokenizer, **kwargs)
        self.recommender = raw_id_recommender(self.model, self.tokenizer, item_table, user_ids)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        num_beams: int | None = None,
        exclude_history: bool | None = None,
        user: Any = None,
        by: str | None = None,
    ) -> tuple[dict, dict, dict]:
        given = {"top_k": top_k, "num_beams": num_beams, "exclude_history": exclude_history, "user": user, "by": by}
        return {name: value for name, value in given.items() if value is not None}, {}, {}

    def __call__(self, inputs, **kwargs):
        """One history (a list of raw item ids or titles) -> one list of dicts; a batch -> one list per history."""
        if isinstance(inputs, (str, bytes, float)) or is_exact_int(inputs):
            single, histories = True, [inputs]  # refused by the history check, which says to wrap it in a list
        elif _is_list_like(inputs):
            entries = inputs.tolist() if hasattr(inputs, "tolist") else list(inputs)
            single = not any(_is_list_like(entry) for entry in entries)
            histories = [entries] if single else entries
        else:
            raise ValueError(
                f"inputs must be one history (a list of raw item ids, oldest first) or a batch of histories (a list "
                f"of such lists), got a {type(inputs).__name__}"
            )
        return super().__call__({"histories": histories, "single": single}, **kwargs)

    def preprocess(
        self,
        inputs: dict,
        top_k: int = 10,
        num_beams: int | None = None,
        exclude_history: bool = False,
        user: Any = None,
        by: str = "item_id",
    ) -> dict:
        histories, single = inputs["histories"], inputs["single"]
        if by not in HISTORY_FORMS:
            raise ValueError(f"by must be one of {HISTORY_FORMS} (what a history lists), got {by!r}")
        if single:
            users = [user] if user is not None else None
        elif user is None:
            users = None
        elif isinstance(user, (str, bytes)) or is_exact_int(user) or not hasattr(user, "__len__"):
            raise ValueError(
                f"a batch of {len(histories)} histories takes one user per history: pass user=[...] (None for a "
                f"history without one), got the single {type(user).__name__} {user!r}"
            )
        else:
            users = list(user)
        if by == "title":
            histories = [self.recommender.titles_to_item_ids(history, row) for row, history in enumerate(histories)]
        request = self.recommender.prepare(histories, users, top_k, num_beams, exclude_history)
        return {"request": request, "single": single}

    def _forward(self, model_inputs: dict) -> dict:
        result = self.recommender.rank(model_inputs["request"])
        return {**model_inputs, "items": result.items, "scores": result.scores}

    def postprocess(self, model_outputs: dict) -> list[dict] | list[list[dict]]:
        result = Recommendations(items=model_outputs["items"], scores=model_outputs["scores"])
        lists = [
            [{"item_id": row.item_id, "title": row.title, "score": row.score} for row in rows]
            for rows in self.recommender.rows(model_outputs["request"], result)
        ]
        return lists[0] if model_outputs["single"] else lists

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Model, tokenizer, this pipeline's code (``custom_pipelines`` in config.json) and the id tables.

        ``items.jsonl`` is written when the tokenizer did not write it (SASRec has no tokenizer), and
        ``users.jsonl`` for a model with a user token, so the directory serves raw ids wherever it is loaded.
        """
        super().save_pretrained(save_directory, **kwargs)
        recommender = self.recommender
        items_path = os.path.join(save_directory, ITEMS_FILE)
        if not recommender.ids_are_indices and not os.path.exists(items_path):
            write_table(items_path, "item_id", recommender.item_ids, recommender.titles)
        if recommender.user_index_of:
            by_index = sorted(recommender.user_index_of, key=recommender.user_index_of.__getitem__)
            write_table(os.path.join(save_directory, USERS_FILE), "user_id", by_index)


def save_with_pipeline(
    directory: str | os.PathLike,
    model,
    tokenizer=None,
    item_table: tuple[list[str], list[str]] | None = None,
    user_ids: list[str] | None = None,
) -> None:
    """Save a trained model as a servable directory: weights, tokenizer, id tables and this pipeline's code.

    What a run's final ``model/`` is written with, so ``pipeline(model=directory, trust_remote_code=True)``
    works on every trained model. The model stays on its device.
    """
    pipe = SequentialRecommendationPipeline(
        model=model, tokenizer=tokenizer, item_table=item_table, user_ids=user_ids, device=model.device
    )
    pipe.save_pretrained(directory)


def add_pipeline_code(directory: str | os.PathLike) -> None:
    """Make an already saved model directory load as this pipeline, as :meth:`save_pretrained` would have.

    Copies this module and the files it imports beside the weights and names the pipeline in
    ``config.json`` (``custom_pipelines``, in the form ``Pipeline.save_pretrained`` writes), without loading
    or re-writing the model: the step a run's saving path ends with, and the way to upgrade a directory saved
    before the pipeline existed. The directory must hold a saved model's ``config.json``.
    """
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{directory} holds no config.json: pass a saved model directory (e.g. runs/demo/model)"
        )
    with open(config_path) as handle:
        config = json.load(handle)
    config["custom_pipelines"] = {
        TASK: {
            "impl": f"{__name__.rsplit('.', 1)[-1]}.{SequentialRecommendationPipeline.__name__}",
            "pt": ["AutoModel"],
        }
    }
    custom_object_save(SequentialRecommendationPipeline, directory)
    with open(config_path, "w") as handle:
        handle.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
