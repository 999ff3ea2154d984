"""sidrec's demo Space: search a shipped checkpoint's catalogue by title, build a history, see the next items.

The app is the ``sequential-recommendation`` pipeline that every saved sidrec model carries beside its weights
(``pipeline(..., trust_remote_code=True)``), behind a small Gradio page. It needs ``transformers`` and ``torch``
but not sidrec, so the same file runs from a clone (``python space/app.py``), from an installed sidrec
(``pip install '.[space]'``) and as a Hugging Face Space (this folder uploaded with ``hf upload <you>/<space>
space/ --repo-type space``). Which model it serves is decided by :func:`find_model`.

The logic lives in plain functions (:func:`search`, :func:`add_to_history`, :func:`recommend` and the two
renderers) that take the pipeline or its catalogue and return plain values, so they are tested without a browser
(``tests/test_space.py``); :func:`build_demo` only wires them to Gradio components. Gradio is imported there and
in :func:`main`, not at the top, so the logic also runs where Gradio is not installed.
"""

from __future__ import annotations

import argparse
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# No usage analytics and no version check: the app and its test run offline. Set before Gradio is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

HERE = Path(__file__).resolve().parent
TASK = "sequential-recommendation"
DEFAULT_CHECKPOINT = "scientific-tiger"  # the shipped checkpoint served unless told otherwise
MODEL_ENV = "SIDREC_MODEL"  # a model folder, a shipped checkpoint's name or a Hub model id
BUNDLED_MODEL = "model"  # a checkpoint folder uploaded into the Space beside app.py
MAX_MATCHES = 50  # matches listed for one search: enough to pick from, few enough to read
DEFAULT_TOP_K = 10
MAX_TOP_K_FULL_RANKING = 100  # a model that ranks the whole catalogue (SASRec) has no beam limit; the page has one


# ----- which model ---------------------------------------------------------------------------------------------------


def models_in_readme(readme: Path) -> list[str]:
    """The Hub model ids under ``models:`` in a Space README's YAML header (none when it has no such header)."""
    if not readme.is_file():
        return []
    from huggingface_hub import metadata_load

    models = (metadata_load(readme) or {}).get("models") or []
    return [models] if isinstance(models, str) else [str(model) for model in models]


def _shipped_checkpoint(name: str, here: Path = HERE) -> Path | None:
    """The folder of a checkpoint shipped with sidrec: the clone's ``checkpoints/<name>``, else the installed one."""
    clone = here.parent / "checkpoints" / name
    if (clone / "config.json").is_file():
        return clone
    try:
        from sidrec.checkpoints import checkpoint_path
    except ImportError:  # a Space: sidrec is not installed, the model comes from the Space or the Hub
        return None
    try:
        return checkpoint_path(name)
    except FileNotFoundError:
        return None


def find_model(requested: str | None = None, environ: Mapping[str, str] = os.environ, here: Path = HERE) -> str:
    """The model to serve, as ``pipeline`` takes it: a folder or a Hub model id.

    In order: ``requested`` (the command line's ``--model``), then ``$SIDREC_MODEL`` (each a folder, a shipped
    checkpoint's name or a Hub id); a checkpoint folder uploaded beside the app (``model/``, a Space that carries
    its model); the shipped ``scientific-tiger`` (from a clone or an installed sidrec); the first Hub id under
    ``models:`` in the README beside the app (a Space whose model lives in its own Hub repository).
    """
    named = (requested or environ.get(MODEL_ENV, "")).strip()
    if named:
        if Path(named).exists():
            return named
        shipped = _shipped_checkpoint(named, here) if "/" not in named else None
        return str(shipped) if shipped is not None else named  # else a Hub id, which pipeline() downloads
    bundled = here / BUNDLED_MODEL
    if (bundled / "config.json").is_file():
        return str(bundled)
    shipped = _shipped_checkpoint(DEFAULT_CHECKPOINT, here)
    if shipped is not None:
        return str(shipped)
    listed = models_in_readme(here / "README.md")
    if listed:
        return listed[0]
    raise FileNotFoundError(
        f"no model to serve: no --model or ${MODEL_ENV}, no checkpoint folder at {bundled}, no shipped "
        f"{DEFAULT_CHECKPOINT} (sidrec is not installed and this is not a clone) and no models: entry in "
        f"{here / 'README.md'}; set {MODEL_ENV} to a model folder or Hub model id, or copy a checkpoint folder to "
        f"{bundled}"
    )


def load_pipeline(model: str):
    """The ``sequential-recommendation`` pipeline saved beside ``model`` (its own code: sidrec is not needed)."""
    from transformers import pipeline

    return pipeline(TASK, model=model, trust_remote_code=True)


# ----- the catalogue and the history -------------------------------------------------------------------------------


@dataclass
class Catalogue:
    """The model's items (raw ids and titles, by item index), searchable by title."""

    item_ids: list[str]
    titles: list[str]
    lowered_titles: list[str] = field(init=False, repr=False)  # what a search compares with
    _title_of: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.lowered_titles = [title.lower() for title in self.titles]
        self._title_of = dict(zip(self.item_ids, self.titles))

    @classmethod
    def of(cls, recommend_pipeline) -> Catalogue:
        """The catalogue of a ``sequential-recommendation`` pipeline (its item table, ``items.jsonl``)."""
        recommender = recommend_pipeline.recommender
        return cls(list(recommender.item_ids), list(recommender.titles))

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._title_of

    def title(self, item_id: str) -> str:
        return self._title_of[item_id]

    def label(self, item_id: str) -> str:
        """How an item is listed: its title, then its id (several items of a real catalogue share a title)."""
        return f"{self.title(item_id) or '(no title)'} [{item_id}]"


def search(catalogue: Catalogue, query: str, limit: int = MAX_MATCHES) -> list[tuple[str, str]]:
    """Items whose title holds every word of ``query`` (any case), as (label, item id) pairs, best first.

    A title equal to the query comes first, then titles that start with it, then the rest, each group in the
    catalogue's order. An empty query matches nothing (listing thousands of items helps nobody).
    """
    words = query.lower().split()
    if not words:
        return []
    phrase = " ".join(words)
    found = []
    for index, title in enumerate(catalogue.lowered_titles):
        if all(word in title for word in words):
            normalised = " ".join(title.split())
            group = 0 if normalised == phrase else 1 if normalised.startswith(phrase) else 2
            found.append((group, index))
    found.sort()
    return [(catalogue.label(catalogue.item_ids[index]), catalogue.item_ids[index]) for _, index in found[:limit]]


def add_to_history(catalogue: Catalogue, history: Sequence[str], item_id: str | None) -> list[str]:
    """A new history with ``item_id`` appended (the newest last, as the model reads it); ``history`` is unchanged.

    Nothing chosen, an id the catalogue lacks and an item already in the history are refused: the data sets keep
    a user's first interaction with an item only, so a repeat is not a history the model was trained on.
    """
    if not item_id:
        raise ValueError("choose an item first: type part of a title in the search box, then pick one of the matches")
    if item_id not in catalogue:
        raise ValueError(
            f"item {item_id!r} is not in this model's catalogue of {len(catalogue)} items; pick one of the matches"
        )
    if item_id in history:
        raise ValueError(f"{catalogue.label(item_id)} is already in the history; pick another item")
    return [*history, item_id]


def max_top_k(recommend_pipeline) -> int:
    """The most items the page offers: the beam width of a semantic-ID model, capped for a full-ranking one."""
    recommender = recommend_pipeline.recommender
    if recommender.ranks_items:
        return min(MAX_TOP_K_FULL_RANKING, len(recommender.item_ids))
    return int(recommender.model.generation_config.num_beams)


def recommend(recommend_pipeline, history: Sequence[str], top_k: int | float) -> list[dict[str, Any]]:
    """The pipeline's top-``top_k`` items for ``history`` (raw ids, oldest first): ``{item_id, title, score}``.

    An empty history gets no recommendations (the page asks for items instead). ``top_k`` may come from a slider
    as a float; a whole number is taken, anything else is refused by the pipeline's own check.
    """
    if not history:
        return []
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)
    return recommend_pipeline(list(history), top_k=top_k)


# ----- what the page shows -----------------------------------------------------------------------------------------


def render_history(catalogue: Catalogue, history: Sequence[str]) -> str:
    """The history as an HTML table, oldest first (one row per item, ``data-item-id`` on each)."""
    if not history:
        return '<p class="empty">The history is empty: search for an item and add it.</p>'
    rows = "".join(
        f'<tr data-item-id="{html.escape(item_id)}"><td class="position">{position}</td>'
        f'<td class="title">{html.escape(catalogue.title(item_id))}</td>'
        f'<td class="item-id">{html.escape(item_id)}</td></tr>'
        for position, item_id in enumerate(history, start=1)
    )
    return f'<table class="history"><thead><tr><th>#</th><th>title</th><th>item</th></tr></thead>{rows}</table>'


def render_recommendations(rows: Sequence[Mapping[str, Any]]) -> str:
    """Recommendations as an HTML table, best first: rank, title, item id and the model's score."""
    if not rows:
        return '<p class="empty">Add items to the history, then press Recommend.</p>'
    body = "".join(
        f'<tr data-item-id="{html.escape(row["item_id"])}"><td class="rank">{rank}</td>'
        f'<td class="title">{html.escape(row["title"])}</td><td class="item-id">{html.escape(row["item_id"])}</td>'
        f'<td class="score">{row["score"]:.3f}</td></tr>'
        for rank, row in enumerate(rows, start=1)
    )
    return (
        '<table class="recommendations"><thead><tr><th>#</th><th>title</th><th>item</th><th>score</th></tr>'
        f"</thead>{body}</table>"
    )


# ----- the page ----------------------------------------------------------------------------------------------------

INTRO = """# sidrec: what comes next

A generative recommender with semantic IDs (sidrec), serving `{model}`:
{items:,} items. Search the catalogue by title, add items to a history (oldest first), choose how many
items to see, and press **Recommend**. Scores are the model's log-probabilities (higher is better).
"""


def build_demo(recommend_pipeline, model_name: str = DEFAULT_CHECKPOINT):
    """The Gradio page over a loaded pipeline. Element ids (``search``, ``matches``, ``add``, ``history``,
    ``clear``, ``top-k``, ``recommend``, ``recommendations``) are what the browser test finds."""
    import gradio as gr

    catalogue = Catalogue.of(recommend_pipeline)
    top_k_limit = max_top_k(recommend_pipeline)

    def on_search(query: str):
        matches = search(catalogue, query)
        return gr.Dropdown(choices=matches, value=matches[0][1] if matches else None)

    def on_add(history: list[str], item_id: str | None):
        try:
            history = add_to_history(catalogue, history, item_id)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        return history, render_history(catalogue, history)

    def on_clear():
        return [], render_history(catalogue, []), render_recommendations([])

    def on_recommend(history: list[str], top_k: float):
        try:
            return render_recommendations(recommend(recommend_pipeline, history, top_k))
        except ValueError as error:
            raise gr.Error(str(error)) from error

    with gr.Blocks(title="sidrec demo", analytics_enabled=False) as demo:
        history_state = gr.State([])
        gr.Markdown(INTRO.format(model=model_name, items=len(catalogue)))
        with gr.Row():
            with gr.Column():
                query = gr.Textbox(
                    label="Search the catalogue by title", placeholder="e.g. thermometer", elem_id="search"
                )
                matches = gr.Dropdown(choices=[], value=None, label="Matches", elem_id="matches")
                add = gr.Button("Add to history", elem_id="add")
                history_view = gr.HTML(render_history(catalogue, []), label="History", elem_id="history")
                clear = gr.Button("Clear history", elem_id="clear")
            with gr.Column():
                top_k = gr.Slider(
                    1, top_k_limit, value=min(DEFAULT_TOP_K, top_k_limit), step=1, label="Top-k", elem_id="top-k"
                )
                run = gr.Button("Recommend", variant="primary", elem_id="recommend")
                results = gr.HTML(render_recommendations([]), label="Recommendations", elem_id="recommendations")
        query.change(on_search, inputs=query, outputs=matches, show_progress="hidden")
        add.click(on_add, inputs=[history_state, matches], outputs=[history_state, history_view])
        clear.click(on_clear, outputs=[history_state, history_view, results])
        run.click(on_recommend, inputs=[history_state, top_k], outputs=results)
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    """``python space/app.py [--model M] [--host H] [--port P]``: load the model and serve the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"a model folder, a shipped checkpoint's name or a Hub id (${MODEL_ENV})")
    parser.add_argument("--host", help="address to listen on (default: Gradio's, or $GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, help="port (default: Gradio's, or $GRADIO_SERVER_PORT)")
    args = parser.parse_args(argv)
    model = find_model(args.model)
    demo = build_demo(load_pipeline(model), model_name=Path(model).name if Path(model).exists() else model)
    demo.launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
