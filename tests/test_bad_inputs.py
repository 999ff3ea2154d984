"""Bad inputs as one table: each row is a damaged input, the exact error it raises and the words that name it.

A row is ``(id, trigger, expected, words)``. ``trigger`` is a callable of the :class:`Bad` workbench
(Python API, recipes, data files, model directories) or a :class:`Cli` argv run through
``sidrec.cli:main`` in-process; ``expected`` is the exact exception class, or :class:`Exit` for the
CLI (exit code, and the words must be on stderr with no traceback). The damaged model directories
are copies of a tiny run saved by the real pipeline (``served_run``: the recipe of
``user_token_run`` in tests/test_reliability.py, cut to 400 users and 3 steps); the damaged data
files are slices of the shipped Scientific data. Bad inputs already tested elsewhere are not
repeated: ``--top-k 0`` / ``-3`` (test_reliability), the 15 malformed data files of test_data,
the recipe rules of test_pipeline, test_reliability, test_dmrec and test_finetune.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sidrec import SemanticIDTokenizer
from sidrec.training.data import DataConfig, DataFormatError, load_sequential_data, require_training_examples
from sidrec.training.errors import ModelDirectoryError, RecipeError
from sidrec.training.metrics import ranking_metrics

from .conftest import SCIENTIFIC
from .test_pipeline import TINY, recipe_file


@dataclass(frozen=True)
class Exit:
    """The CLI's exit status for a row run through ``sidrec.cli:main``."""

    code: int


@dataclass(frozen=True)
class Cli:
    """An argv for ``sidrec.cli:main``, built from the workbench (paths of fresh copies, real item ids)."""

    argv: Callable[[Bad], list[str]]


@pytest.fixture(scope="module")
def served_run(tmp_path_factory) -> Path:
    """A tiny run saved by the pipeline: model + tokenizer reading a user token, items.jsonl, users.jsonl."""
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    out = tmp_path_factory.mktemp("served")
    overrides = [o for o in TINY if not o.startswith(("evaluation.", "data.max_users", "quantizer.epochs"))]
    overrides += ["data.max_users=400", "quantizer.epochs=20", "model.num_user_buckets=8", "training.max_steps=3"]
    overrides += ["evaluation.num_beams=10", "evaluation.ks=[5, 10]", "evaluation.max_validation_users=20"]
    overrides += ["evaluation.max_test_users=20", f"output_dir={out}"]
    run(load_recipe(recipe_file(out), overrides))
    return out


@pytest.fixture(scope="module")
def served_recommender(served_run):
    from sidrec import load_recommender

    return load_recommender(served_run / "model")


@lru_cache(maxsize=1)
def scientific_lines() -> tuple[str, ...]:
    """The shipped Scientific interactions, header first, as text lines."""
    with gzip.open(SCIENTIFIC / "interactions.csv.gz", "rt") as handle:
        return tuple(handle.read().splitlines())


def real_csv(rows: int = 300, extra_field_on: int | None = None) -> str:
    """The first ``rows`` interactions of Scientific as CSV text; ``extra_field_on`` gives that line a 4th field."""
    lines = list(scientific_lines()[: rows + 1])
    if extra_field_on is not None:
        lines[extra_field_on] += ",extra"
    return "\n".join(lines) + "\n"


class Bad:
    """The workbench a row damages: fresh copies of the served model directory, data and recipe files."""

    def __init__(self, tmp: Path, run_dir: Path, recommender):
        self.tmp, self.run_dir, self.recommender = tmp, run_dir, recommender
        self._count = itertools.count()

    @property
    def missing(self) -> str:
        return str(self.tmp / "no-such-model")

    def item(self, index: int = 0) -> str:
        """A raw item id of the served model's catalogue."""
        return self.recommender.item_ids[index]

    @property
    def user(self) -> str:
        """A raw user id the served model was trained on (it reads a user token)."""
        return next(iter(self.recommender.user_index_of))

    def unfinished_run(self) -> Path:
        """A run directory with its model/ and recipe.yaml but no metrics.json (as an interrupted run leaves it)."""
        target = self.tmp / f"run-{next(self._count)}"
        shutil.copytree(self.run_dir / "model", target / "model")
        shutil.copy(self.run_dir / "recipe.yaml", target / "recipe.yaml")
        return target

    def model(self, *damages: Callable[[Path], None]) -> Path:
        """A copy of the served model directory with ``damages`` applied."""
        target = self.tmp / f"model-{next(self._count)}"
        shutil.copytree(self.run_dir / "model", target)
        for damage in damages:
            damage(target)
        return target

    def load(self, *damages: Callable[[Path], None]):
        from sidrec.recommender import Recommender

        return Recommender.from_pretrained(self.model(*damages))

    def data(self, files: dict[str, str | bytes], **settings):
        """``load_sequential_data`` on a directory holding ``files``."""
        directory = self.tmp / f"data-{next(self._count)}"
        directory.mkdir()
        for name, content in files.items():
            path = directory / name
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return load_sequential_data(DataConfig(path=str(directory), **settings), verbose=False)

    def recipe_file(self, text: str = "name: r\ndata: {path: unused}\n") -> Path:
        path = self.tmp / f"recipe-{next(self._count)}.yaml"
        path.write_text(text)
        return path

    def recipe(self, text: str = "name: r\ndata: {path: unused}\n", *overrides: str):
        """Load and check a recipe, as ``run`` does before any work."""
        from sidrec.training.recipe import check_recipe, load_recipe

        recipe = load_recipe(self.recipe_file(text), list(overrides))
        check_recipe(recipe)
        return recipe

    def checked(self, *overrides: str):
        return self.recipe("name: r\ndata: {path: unused}\n", *overrides)


@pytest.fixture
def bad(tmp_path, served_run, served_recommender) -> Bad:
    return Bad(tmp_path, served_run, served_recommender)


# ----- damages to a model directory ------------------------------------------------------------------
def removed(name: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).unlink()


def truncated(name: str) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        data = (directory / name).read_bytes()
        (directory / name).write_bytes(data[: len(data) // 2])

    return damage


def rewritten(name: str, text: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).write_text(text)


def json_edited(name: str, **changes) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        values = json.loads((directory / name).read_text())
        (directory / name).write_text(json.dumps({**values, **changes}))

    return damage


def lines_edited(name: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        lines = (directory / name).read_text().splitlines()
        (directory / name).write_text("\n".join(edit(lines)) + "\n")

    return damage


def codes_edited(edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        codes = load_file(directory / "item_codes.safetensors")["codes"]
        save_file({"codes": edit(codes.clone()).contiguous()}, directory / "item_codes.safetensors")

    return damage


def _set(tensor: torch.Tensor, index, value) -> torch.Tensor:
    tensor[index] = value
    return tensor


def codes(bad: Bad) -> torch.Tensor:
    return bad.recommender.tokenizer.item_codes.clone()


def recommend(bad: Bad, histories, **kwargs):
    """The model's own ``recommend`` over item indices, with the served tokenizer unless one is given."""
    tokenizer = kwargs.pop("tokenizer", bad.recommender.tokenizer)
    return bad.recommender.model.recommend(histories, tokenizer, **kwargs)


def without_user_token(bad: Bad):
    """The served Recommender as if its tokenizer read no user token (the CLI's --user goes through it too)."""
    from sidrec.recommender import Recommender

    served = bad.recommender
    tokenizer = SemanticIDTokenizer(item_codes=codes(bad), codebook_size=32, num_user_buckets=0)
    return Recommender(served.model, tokenizer, served.item_ids, served.titles)


def metric():
    """The ``evaluate`` module, loaded from its folder as a user would."""
    import evaluate

    import sidrec.metrics

    return evaluate.load(sidrec.metrics.SID_RANKING)


def row(name: str, trigger, expected, *words: str):
    return pytest.param(trigger, expected, words, id=name)


# Four users with three interactions each: readable, but no user has a training example.
THREE_PER_USER = {
    "interactions.csv": "user_id,item_id,position\n" + "".join(f"u{u},{i},{i}\n" for u in range(4) for i in range(3))
}
LINE_3_BROKEN = lines_edited("items.jsonl", lambda lines: [*lines[:3], lines[3][:20], *lines[4:]])
LINE_3_NO_ID = lines_edited("items.jsonl", lambda lines: [*lines[:3], '{"index": 3, "title": "x"}', *lines[4:]])

ROWS = [
    # ----- CLI: `sidrec recommend`, `sidrec train`, `sidrec card` ---------------------------------------
    row("cli-missing-model-dir", Cli(lambda b: ["recommend", b.missing, "--history", "1"]), Exit(2), "no config.json"),
    row(
        "cli-damaged-weights",
        Cli(lambda b: ["recommend", str(b.model(truncated("model.safetensors"))), "--history", b.item()]),
        Exit(2),
        "cannot load the model",
        "damaged or truncated",
    ),
    row(
        "cli-unknown-user",
        Cli(lambda b: ["recommend", str(b.model()), "--history", b.item(), "--user", "nobody"]),
        Exit(2),
        "unknown user id(s) ['nobody']",
        "users.jsonl",
    ),
    row(
        "cli-num-beams-zero",
        Cli(lambda b: ["recommend", b.missing, "--history", "1", "--num-beams", "0"]),
        Exit(2),
        "--num-beams",
        "must be at least 1",
    ),
    row(
        "cli-fractional-top-k",
        Cli(lambda b: ["recommend", b.missing, "--history", "1", "--top-k", "2.5"]),
        Exit(2),
        "--top-k",
        "expected a whole number, got '2.5'",
    ),
    row(
        "cli-top-k-over-beams",
        Cli(lambda b: ["recommend", str(b.model()), "--history", b.item(), "--user", b.user, "--top-k", "12"]),
        Exit(2),
        "top_k=12 exceeds num_beams=10",
        "pass num_beams >= 12",
    ),
    row(
        "cli-no-history",
        Cli(lambda b: ["recommend", b.missing]),
        Exit(2),
        "the following arguments are required: --history",
    ),
    row("cli-no-command", Cli(lambda b: []), Exit(2), "the following arguments are required: command"),
    row(
        "cli-unknown-flag",
        Cli(lambda b: ["train", "--config", str(b.recipe_file()), "--epochs", "3"]),
        Exit(2),
        "unrecognized arguments: --epochs",
    ),
    row(
        "cli-recipe-not-yaml",
        Cli(lambda b: ["train", "--config", str(b.recipe_file("name: r\ndata: {path: x\n"))]),
        Exit(2),
        "is not valid YAML",
        "fix the line it names",
    ),
    row(
        "cli-recipe-override-wrong-type",
        Cli(lambda b: ["train", "--config", str(b.recipe_file()), "training.batch_size=big"]),
        Exit(2),
        "recipe key training.batch_size must be a whole number, got 'big'",
    ),
    row(
        "cli-card-without-metrics",
        Cli(lambda b: ["card", str(b.unfinished_run())]),
        Exit(2),
        "metrics.json",
        "finished run",
    ),
    # ----- Python API: Recommender, model.recommend, SemanticIDTokenizer, ranking_metrics ---------------
    row(
        "api-missing-model-dir",
        lambda b: __import__("sidrec").load_recommender(b.missing),
        FileNotFoundError,
        "is not a saved sidrec model (no config.json)",
        "runs/demo/model",
    ),
    row(
        "api-history-is-a-string",
        lambda b: b.recommender.recommend(b.item(), user=b.user),
        ValueError,
        "a history is a list of raw item ids",
        "pass [",
    ),
    row(
        "api-top-k-zero-excluding-history",
        lambda b: b.recommender.recommend([b.item()], top_k=0, user=b.user, exclude_history=True),
        ValueError,
        "top_k must be a positive number of items, got 0",
    ),
    row(
        "api-num-beams-zero",
        lambda b: b.recommender.recommend([b.item()], num_beams=0, user=b.user),
        ValueError,
        "num_beams must be a positive number of beams, got 0",
    ),
    row(
        "api-model-num-beams-zero",
        lambda b: recommend(b, [[0, 1]], top_k=5, num_beams=0),
        ValueError,
        "num_beams must be a positive number of beams, got 0",
    ),
    row(
        "api-empty-history",
        lambda b: b.recommender.recommend([], user=b.user),
        ValueError,
        "History 0 is empty",
        "popularity ranking",
    ),
    row(
        "api-users-do-not-match-histories",
        lambda b: b.recommender.recommend_batch([[b.item(0)], [b.item(1)]], users=[b.user]),
        ValueError,
        "got 1 users for 2 histories",
    ),
    row(
        "api-model-out-of-range-item",
        lambda b: recommend(b, [[0, b.recommender.tokenizer.num_items]]),
        ValueError,
        "Unknown item id",
        "Map raw ids to item indices",
    ),
    row(
        "api-model-negative-item",
        lambda b: recommend(b, [[-1, 0]]),
        ValueError,
        "Unknown item id -1",
    ),
    row(
        "api-model-top-k-over-beams",
        lambda b: recommend(b, [[0, 1]], top_k=11, num_beams=10),
        ValueError,
        "top_k=11 exceeds num_beams=10",
    ),
    row(
        "api-model-with-another-tokenizer",
        lambda b: recommend(b, [[0]], tokenizer=SemanticIDTokenizer(item_codes=codes(b), codebook_size=64)),
        ValueError,
        "does not match the model's",
        "load the tokenizer saved with this model",
    ),
    row(
        "api-tokenizer-code-table-too-narrow",
        lambda b: SemanticIDTokenizer(item_codes=codes(b)[:, :3], num_levels=4, codebook_size=32),
        ValueError,
        "item_codes must have shape (num_items, 4), got",
    ),
    row(
        "api-tokenizer-code-out-of-range",
        lambda b: SemanticIDTokenizer(item_codes=_set(codes(b), (0, 1), 32), num_levels=4, codebook_size=32),
        ValueError,
        "codes must lie in [0, 32)",
    ),
    row(
        "api-tokenizer-duplicate-codes",
        lambda b: SemanticIDTokenizer(item_codes=_set(codes(b), 1, codes(b)[0]), num_levels=4, codebook_size=32),
        ValueError,
        "two items share a full semantic ID",
        "append a collision level",
    ),
    row(
        "api-metrics-cut-off-over-list",
        lambda b: ranking_metrics(recommend(b, [[0, 1]], top_k=5).items, torch.tensor([2]), ks=(10,)),
        ValueError,
        "cut-off 10 exceeds the 5 ranked items per user",
    ),
    row(
        "api-metrics-empty-held-out-set",
        lambda b: ranking_metrics(recommend(b, [[0], [1]], top_k=5).items, torch.tensor([[2, -1], [-1, -1]]), ks=(5,)),
        ValueError,
        "every user needs at least one relevant item",
    ),
    # ----- silent wrong answers before issue 35: each row answered without a word on 63ebdf8 -------------
    row(
        "api-model-float-item-id",
        lambda b: recommend(b, [[10.0, 42.0, 7.5]], top_k=3),
        ValueError,
        "item id 10.0 is a float, not an integer index",
        "convert the ids to int where they are read",
    ),
    row(
        "api-model-bool-item-id",
        lambda b: recommend(b, [[True, False]], top_k=3),
        ValueError,
        "item id True is a bool, not an integer index",
    ),
    row(
        "api-model-flat-history",
        lambda b: recommend(b, [10, 42, 7], top_k=3),
        ValueError,
        "entry 0 is the single id 10",
        "for one history pass [[...]]",
    ),
    row(
        "api-model-string-item-id",
        lambda b: recommend(b, [["10"]], top_k=3),
        ValueError,
        "item id '10' is a str",
        "sidrec.Recommender",
    ),
    row(
        "api-model-huge-item-id",
        lambda b: recommend(b, [[2**70]], top_k=3),
        ValueError,
        f"Unknown item id {2**70}",
    ),
    row(
        "api-model-empty-batch",
        lambda b: recommend(b, [], top_k=3),
        ValueError,
        "histories is an empty batch",
    ),
    row(
        "api-model-float-top-k",
        lambda b: recommend(b, [[0, 1]], top_k=3.0),
        ValueError,
        "top_k must be a positive number of items, got 3.0",
    ),
    row(
        "api-float-raw-item-id",
        lambda b: b.recommender.recommend([1.0], user=b.user),
        ValueError,
        "item id 1.0 is a float",
        "a float or bool id is not converted",
    ),
    row(
        "api-top-k-over-beams-excluding-history",
        lambda b: b.recommender.recommend([b.item()], top_k=11, user=b.user, exclude_history=True),
        ValueError,
        "top_k=11 exceeds num_beams=10",
    ),
    row(
        "api-metric-repeated-item",
        lambda b: metric().compute(predictions=[[1, 1, 1]], references=[1], ks=[3]),
        ValueError,
        "item(s) [1] appear more than once in one ranked list",
        "remove the repeats",
    ),
    row(
        "api-metric-float-reference",
        lambda b: metric().compute(predictions=[[1, 2, 3]], references=[1.5], ks=[3]),
        ValueError,
        "references[0] = 1.5",
    ),
    row(
        "api-ranking-metrics-repeated-item",
        lambda b: ranking_metrics(torch.tensor([[4, 4, 2]]), torch.tensor([4]), ks=(3,)),
        ValueError,
        "lists an item more than once",
    ),
    row(
        "dir-code-table-of-another-run",
        lambda b: b.load(codes_edited(lambda c: torch.roll(c, 1, dims=0))),
        ModelDirectoryError,
        "is not the one this model was trained on",
        "code_fingerprint",
    ),
    row(
        "dir-config-disagrees-with-weights",
        lambda b: b.load(json_edited("config.json", d_model=96)),
        ModelDirectoryError,
        "config.json does not describe the weights",
        "d_model",
    ),
    row(
        "recipe-max-test-users-zero",
        lambda b: b.checked("evaluation.max_test_users=0"),
        RecipeError,
        "evaluation.max_test_users must be a positive number of users",
        "0 does not mean 'all'",
    ),
    row(
        "recipe-no-levels",
        lambda b: b.checked("quantizer.num_levels=0"),
        RecipeError,
        "quantizer.num_levels counts residual codebooks and must be a whole number >= 1, got 0",
    ),
    row(
        "recipe-one-code",
        lambda b: b.checked("quantizer.codebook_size=1"),
        RecipeError,
        "quantizer.codebook_size counts codes per level",
        ">= 2, got 1",
    ),
    row(
        "recipe-no-heads",
        lambda b: b.checked("model.num_heads=0"),
        RecipeError,
        "model.num_heads counts attention heads and must be a whole number >= 1, got 0",
    ),
    row(
        "recipe-bool-beams",
        lambda b: b.checked("evaluation.num_beams=true"),
        RecipeError,
        "evaluation.num_beams",
    ),
    row(
        "api-user-on-a-model-without-a-user-token",
        lambda b: without_user_token(b).recommend([b.item()], user=b.user),
        ValueError,
        "a user was given, but this model has no user token",
        "leave the user out",
    ),
    row(
        "data-three-interactions-per-user",
        lambda b: require_training_examples(b.data(THREE_PER_USER, min_user_interactions=3, min_item_interactions=1)),
        DataFormatError,
        "no training examples",
        "A user needs 4 interactions to give one training example",
    ),
    # ----- recipes: load_recipe + check_recipe, as `run` calls them before any work ------------------------
    row(
        "recipe-not-yaml",
        lambda b: b.recipe("name: r\ndata: {path: x\n"),
        RecipeError,
        "is not valid YAML",
        ".yaml",
    ),
    row(
        "recipe-override-not-yaml",
        lambda b: b.checked("evaluation.ks=[5, 10"),
        RecipeError,
        "override 'evaluation.ks=[5, 10'",
        "not valid YAML",
        "close its brackets",
    ),
    row(
        "recipe-section-not-a-mapping",
        lambda b: b.recipe("name: r\ndata: {path: x}\ntraining: 5\n"),
        RecipeError,
        "recipe section training must be a mapping",
        "got 5",
    ),
    row(
        "recipe-misspelt-section",
        lambda b: b.recipe("name: r\ndata: {path: x}\ntrainig: {epochs: 1}\n"),
        RecipeError,
        "unknown recipe key trainig",
        "Did you mean 'training'",
    ),
    row(
        "recipe-data-without-path",
        lambda b: b.recipe("name: r\ndata: {format: table}\n"),
        RecipeError,
        "recipe section data",
        "'path'",
    ),
    row(
        "recipe-int-setting-is-a-word",
        lambda b: b.checked("model.d_model=big"),
        RecipeError,
        "recipe key model.d_model must be a whole number, got 'big'",
    ),
    row(
        "recipe-int-setting-is-fractional",
        lambda b: b.checked("evaluation.num_beams=2.5"),
        RecipeError,
        "recipe key evaluation.num_beams must be a whole number, got 2.5",
    ),
    row(
        "recipe-cut-offs-not-a-list",
        lambda b: b.checked("evaluation.ks=5,10"),
        RecipeError,
        "recipe key evaluation.ks must be a list of whole numbers",
    ),
    row(
        "recipe-flag-not-a-boolean",
        lambda b: b.checked("joint.enabled=maybe"),
        RecipeError,
        "recipe key joint.enabled must be true or false, got 'maybe'",
    ),
    row(
        "recipe-objectives-not-a-mapping",
        lambda b: b.checked("training.objectives=[ce]"),
        RecipeError,
        "recipe key training.objectives must be a mapping",
    ),
    row(
        "recipe-learning-rate-per-prefix-is-a-word",
        lambda b: b.checked("training.learning_rates={encoder: fast}"),
        RecipeError,
        "recipe key training.learning_rates.encoder must be a number, got 'fast'",
    ),
    row(
        "recipe-objective-weight-is-a-word",
        lambda b: b.checked("training.objectives={ce: heavy}"),
        ValueError,
        "objective 'ce' in training.objectives: the weight must be a number, got 'heavy'",
    ),
    row(
        "recipe-no-objectives",
        lambda b: b.checked("training.objectives={}"),
        ValueError,
        "the recipe names no objectives",
        "objectives: {ce: 1.0}",
    ),
    row(
        "recipe-ce-takes-no-options",
        lambda b: b.checked("training.objectives={ce: {weight: 1.0, smoothing: 0.1}}"),
        ValueError,
        "objective 'ce' takes no options ['smoothing']",
    ),
    row(
        "recipe-soda-zero-temperature",
        lambda b: b.checked(
            "joint.enabled=true", "training.objectives={ce: 1.0, quantizer: 1.0, soda: {temperature: 0}}"
        ),
        ValueError,
        "temperature > 0",
        "temperature=0",
    ),
    row(
        "recipe-unknown-sasrec-loss",
        lambda b: b.checked("sasrec.enabled=true", "sasrec.loss_type=hinge"),
        RecipeError,
        "sasrec.loss_type must be one of ('ce', 'bce'), got 'hinge'",
    ),
    row(
        "recipe-sasrec-heads-do-not-divide",
        lambda b: b.checked("sasrec.enabled=true", "sasrec.num_heads=5"),
        RecipeError,
        "sasrec.hidden_size 64 must be divisible by num_heads 5",
    ),
    row(
        "recipe-sasrec-with-soda",
        lambda b: b.checked("sasrec.enabled=true", "joint.enabled=true", "training.objectives={ce: 1.0, soda: 0.1}"),
        RecipeError,
        "sasrec.enabled trains SASRec on its own loss",
        "{ce: 1.0}",
    ),
    row(
        "recipe-exclude-history-on-a-generative-model",
        lambda b: b.checked("evaluation.exclude_history=true"),
        RecipeError,
        "evaluation.exclude_history ranks without the user's own items",
        "set sasrec.enabled: true or drop evaluation.exclude_history",
    ),
    row(
        "recipe-dmrec-objective-without-dmrec",
        lambda b: b.checked("training.objectives={ce: 1.0, dmrec: 1.0}"),
        RecipeError,
        "objective `dmrec` matches the Gaussians of DMRec-T5",
        "dmrec: {enabled: true}",
    ),
    row(
        "recipe-dmrec-without-its-objective",
        lambda b: b.checked("dmrec.enabled=true"),
        RecipeError,
        "dmrec.enabled without the `dmrec` objective",
    ),
    row(
        "recipe-unknown-dmrec-strategy",
        lambda b: b.checked("dmrec.enabled=true", "training.objectives={ce: 1.0, dmrec: {strategy: kl}}"),
        ValueError,
        "dmrec strategy must be one of",
        "got 'kl'",
    ),
    row(
        "recipe-keep-shards-with-diger",
        lambda b: b.checked(
            "embeddings.keep_shards=true", "joint.enabled=true", "training.objectives={ce: 1.0, quantizer: 1.0}"
        ),
        RecipeError,
        "embeddings.keep_shards serves TIGER's text codes only",
        "set embeddings.keep_shards: false",
    ),
    # ----- data files: load_sequential_data on slices of the shipped Scientific data ------------------------
    row(
        "data-dir-without-interactions",
        lambda b: b.data({"items.jsonl.gz": (SCIENTIFIC / "items.jsonl.gz").read_bytes()}, format="table"),
        DataFormatError,
        "no interactions.* file in",
        "data.interactions_file",
    ),
    row(
        "data-recbole-dir-without-inter",
        lambda b: b.data({"interactions.csv": real_csv()}, format="recbole"),
        DataFormatError,
        "no .inter file in",
        "<name>.inter",
    ),
    row(
        "data-named-interactions-file-missing",
        lambda b: b.data({"interactions.csv": real_csv()}, interactions_file="clicks.csv"),
        FileNotFoundError,
        "clicks.csv not found",
        "check data.interactions_file",
    ),
    row(
        "data-truncated-gzip",
        lambda b: b.data({"interactions.csv.gz": (SCIENTIFIC / "interactions.csv.gz").read_bytes()[:5000]}),
        DataFormatError,
        "cannot parse interactions.csv.gz",
        "Compressed file ended",
    ),
    row(
        "data-header-only",
        lambda b: b.data({"interactions.csv": real_csv(0)}),
        DataFormatError,
        "interactions.csv has no interactions",
        "data.path",
    ),
    row(
        "data-zero-byte-file",
        lambda b: b.data({"interactions.csv": b""}),
        DataFormatError,
        "cannot parse interactions.csv",
        "No columns to parse",
    ),
    row(
        "data-not-parquet",
        lambda b: b.data({"interactions.parquet": real_csv().encode()}),
        DataFormatError,
        "cannot parse interactions.parquet",
    ),
    row(
        "data-jsonl-line-not-an-object",
        lambda b: b.data({"interactions.jsonl": '{"user_id": 0, "item_id": 0, "position": 0}\n[0, 1, 1]\n'}),
        DataFormatError,
        "interactions.jsonl line 2 is a list, not an object",
    ),
    row(
        "data-ragged-csv-row",
        lambda b: b.data({"interactions.csv": real_csv(extra_field_on=6)}),
        DataFormatError,
        "cannot parse interactions.csv",
        "Expected 3 fields",
        "saw 4",
    ),
    row(
        "data-semicolon-separated",
        lambda b: b.data({"interactions.csv": real_csv().replace(",", ";")}),
        DataFormatError,
        "column 'user_id' not in interactions.csv (columns: user_id;item_id;position)",
        "set data.user_column",
    ),
    row(
        "data-order-column-missing",
        lambda b: b.data({"interactions.csv": real_csv()}, order_column="timestamp"),
        DataFormatError,
        "column 'timestamp' not in interactions.csv",
        "set data.order_column",
    ),
    row(
        "data-max-users-zero",
        lambda b: b.data({"interactions.csv": real_csv()}, max_users=0),
        DataFormatError,
        "data.max_users must be a positive integer or None, got 0",
    ),
    row(
        "data-text-fields-a-string",
        lambda b: b.data({"interactions.csv": real_csv()}, text_fields="title"),
        DataFormatError,
        "data.text_fields must be a list of column names, got the string 'title'",
    ),
    # ----- model directories: copies of the served run's model/, damaged -----------------------------------
    row(
        "dir-missing-config",
        lambda b: b.load(removed("config.json")),
        FileNotFoundError,
        "is not a saved sidrec model (no config.json)",
    ),
    row(
        "dir-config-not-json",
        lambda b: b.load(rewritten("config.json", "{not json")),
        ModelDirectoryError,
        "config.json",
        "is not a valid JSON file",
    ),
    row(
        "dir-missing-weights",
        lambda b: b.load(removed("model.safetensors")),
        FileNotFoundError,
        "has no model.safetensors",
        "the model directory is incomplete",
    ),
    row(
        "dir-truncated-weights",
        lambda b: b.load(truncated("model.safetensors")),
        ModelDirectoryError,
        "cannot load the model in",
        "damaged or truncated",
    ),
    row(
        "dir-missing-code-table",
        lambda b: b.load(removed("item_codes.safetensors")),
        FileNotFoundError,
        "has no item_codes.safetensors",
    ),
    row(
        "dir-missing-tokenizer-config",
        lambda b: b.load(removed("tokenizer_config.json")),
        FileNotFoundError,
        "has no tokenizer_config.json",
    ),
    row(
        "dir-truncated-code-table",
        lambda b: b.load(truncated("item_codes.safetensors")),
        ModelDirectoryError,
        "cannot load the tokenizer in",
        "item_codes.safetensors",
    ),
    row(
        "dir-code-table-narrower-than-config",
        lambda b: b.load(codes_edited(lambda codes: codes[:, :3])),
        ModelDirectoryError,
        "cannot load the tokenizer in",
        "item_codes must have shape (num_items, 4)",
    ),
    row(
        "dir-codebook-smaller-than-codes",
        lambda b: b.load(json_edited("tokenizer_config.json", codebook_size=16)),
        ModelDirectoryError,
        "cannot load the tokenizer in",
        "codes must lie in [0, 16)",
    ),
    row(
        "dir-tokenizer-vocabulary-differs",
        lambda b: b.load(json_edited("tokenizer_config.json", codebook_size=64)),
        ModelDirectoryError,
        "does not match the model's config.json",
        "(4, 64, ",
        "(4, 32, ",
    ),
    row(
        "dir-duplicate-codes",
        lambda b: b.load(codes_edited(lambda codes: _set(codes, 1, codes[0]))),
        ModelDirectoryError,
        "cannot load the tokenizer in",
        "two items share a full semantic ID",
    ),
    row(
        "dir-items-table-shortened",
        lambda b: b.load(lines_edited("items.jsonl", lambda lines: lines[:10])),
        ModelDirectoryError,
        "items.jsonl lists 10 items but the tokenizer's code table (item_codes.safetensors) holds",
    ),
    row(
        "dir-items-table-line-broken",
        lambda b: b.load(LINE_3_BROKEN),
        ModelDirectoryError,
        "items.jsonl line 4 is not a row",
        "edited or truncated",
    ),
    row(
        "dir-items-table-row-without-id",
        lambda b: b.load(LINE_3_NO_ID),
        ModelDirectoryError,
        "items.jsonl line 4 is not a row",
        '"item_id"',
    ),
    row(
        "dir-missing-items-table",
        lambda b: b.load(removed("items.jsonl")).recommend(["B00-not-an-index"], user=b.user),
        ValueError,
        "this model directory has no items.jsonl, so item ids are the item indices 0..",
    ),
    row(
        "dir-missing-users-table",
        lambda b: b.load(removed("users.jsonl")).recommend([b.item(0)], user=b.user),
        ValueError,
        "this model directory has no users.jsonl",
    ),
    row(
        "dir-users-table-line-broken",
        lambda b: b.load(lines_edited("users.jsonl", lambda lines: ["{broken", *lines[1:]])),
        ModelDirectoryError,
        "users.jsonl line 1 is not a row",
        '"user_id"',
    ),
]


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``sidrec.cli:main`` in-process: (exit status, stderr); argparse's usage errors exit through SystemExit."""
    from sidrec.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            status = main(argv)
        except SystemExit as stop:
            status = stop.code
    return status, stderr.getvalue()


@pytest.mark.parametrize("trigger, expected, words", ROWS)
def test_bad_input_is_refused_with_an_error_that_names_it(trigger, expected, words, bad):
    if isinstance(trigger, Cli):
        status, message = run_cli(trigger.argv(bad))
        assert status == expected.code, message
        assert "Traceback" not in message
    else:
        with pytest.raises(Exception) as info:
            trigger(bad)
        assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
        message = str(info.value)
    missing = [word for word in words if word not in message]
    assert not missing, f"{missing} not in: {message}"


def test_the_table_is_large_and_its_ids_unique():
    ids = [param.id for param in ROWS]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    assert {type(param.values[1]) for param in ROWS} >= {Exit, type}  # CLI rows and exception rows
