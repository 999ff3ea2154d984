"""YAML recipes: one file per method x data set, with command-line overrides, and their rules.

Every section is a dataclass, so an unknown or misspelt key is an error that names the key, the
section and the closest valid key, instead of a silently ignored setting. This module names no
method: each method's section and rules live in its own module and reach the schema through the
method registry (``registry.py``); :func:`check_recipe` applies the core's rules, then every
method's, before any work is done.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import DataConfig
from .errors import RecipeError
from .objectives import build_objectives
from .recipe_files import read_recipe_values
from .registry import first_answer, method_name, recipe_sections, registered_methods

TASKS = ("sequential", "collaborative")
QUANTIZER_METHODS = ("rqvae", "rq_kmeans")
PRECISIONS = ("fp32", "bf16")
ATTENTION_KERNELS = ("sdpa", "eager")


@dataclass
class EmbeddingRecipe:
    model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    max_seq_length: int = 128
    batch_size: int = 64
    cache_dir: str = ".cache/sidrec/embeddings"
    # Catalogues of more texts are embedded in shards, each cached as it lands (resumable) and spread over
    # the processes of `accelerate launch`.
    shard_size: int = 50_000
    # Leave a sharded catalogue in its shard files (memory-mapped) instead of joining it into one tensor:
    # TIGER's codes for a 10M-item catalogue without a 14 GB table in memory (the RQ-VAE fits on
    # quantizer.fit_sample rows). Only for text codes with TIGER's recommender: the other methods hold the table.
    keep_shards: bool = False
    # What the RQ-VAE quantises: text | collaborative | text+collaborative (a SASRec run's item table).
    source: str = "text"
    collaborative_run: str | None = None  # a finished SASRec run (its output_dir): collaborative embeddings
    # Or a SASRec recipe to train on this recipe's data (once; cached beside the text embeddings).
    collaborative_recipe: str | None = None


@dataclass
class QuantizerRecipe:
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    latent_dim: int = 32
    num_levels: int = 3
    codebook_size: int = 256
    commitment_beta: float = 0.25
    dropout: float = 0.0
    epochs: int = 300
    batch_size: int = 1024
    learning_rate: float = 1e-3
    kmeans_init: bool = True
    kmeans_iterations: int = 20  # Lloyd steps of each level's k-means (RQ-KMeans' whole fit)
    # What turns embeddings into codes: "rqvae" (TIGER's RQ-VAE, trained `epochs`) or "rq_kmeans" (residual
    # k-means of the embeddings themselves, no VAE, as GRID and cornac offer).
    method: str = "rqvae"
    # Re-seed the codes no item chose in an epoch from random residuals (without it the RQ-VAE ends using
    # about half of each codebook on Beauty; docs/tiger.md, "Codes").
    restart_dead_codes: bool = False
    # Sinkhorn-balance the last level's assignment (epsilon 0.003, as LETTER and genrec): fewer collisions.
    balance_last_level: bool = False
    # Fit the RQ-VAE (and its k-means start) on at most this many random items, then code every item:
    # for catalogues of 100k+ items, where an epoch over all of them is the slowest stage (bench_scale.py).
    fit_sample: int | None = None
    # A saved run's model directory whose tokenizer's codes to use instead of fitting an RQ-VAE; the recommender
    # is built fresh. Two-stage DIGER: train on the codes a joint run ended with, without their churn.
    codes_from: str | None = None


@dataclass
class ModelRecipe:
    d_model: int = 128
    d_kv: int = 64
    d_ff: int = 1024
    num_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 6
    dropout_rate: float = 0.1
    num_user_buckets: int = 0
    # transformers' attention kernel for training: "sdpa" (its default) or "eager". On these CPUs eager trains a
    # TIGER-size T5 1.2-1.6x faster (T5's position bias is a float mask, which sends SDPA to its slow math path;
    # benchmarks/results/train_speed_cpu.json). Not saved with the model: loading picks transformers' default.
    attn_implementation: str = "sdpa"


@dataclass
class TrainingRecipe:
    objectives: dict[str, Any] = field(default_factory=lambda: {"ce": 1.0})
    epochs: float = 10
    max_steps: int = -1
    batch_size: int = 256
    learning_rate: float = 1e-3
    learning_rates: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> learning rate
    num_negatives: int = 0  # catalogue items sampled per row by the collator (SODA's `sampled` negatives)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "cosine"
    early_stopping_patience: int = 3
    group_by_length: bool = True  # batches of similar history length: far less padding
    eval_steps: int | None = None
    logging_steps: int = 50
    save_total_limit: int = 2
    torch_threads: int | None = None
    deterministic: bool = True  # PyTorch's deterministic algorithms while training (reproducible joint runs)
    # fp32, or bf16 autocast (TrainingArguments' bf16; on CPUs with AVX-512 BF16 or AMX a TIGER-size step
    # runs about twice as fast; benchmarks/results/train_speed_cpu.json). Weights and optimizer stay fp32.
    precision: str = "fp32"
    # torch.compile the training step (TrainingArguments' torch_compile; needs a C++ compiler on CPU). Its compile
    # time is paid once per run and per new batch shape; benchmarks/bench_train.py --real measures the trade.
    torch_compile: bool = False
    # Dropout masks drawn by numpy's SFC64 instead of PyTorch's generator (training/fast_dropout.py): the same
    # dropout at every site, p rounded to 1/65536, at a fraction of its CPU cost. Changes the draw, not the model.
    fast_dropout: bool = False


@dataclass
class FinetuneRecipe:
    """Continue training a saved model (``from_model``) instead of building one, optionally with PEFT.

    ``peft`` is a ``peft`` config as a mapping (``peft_type`` plus that method's options, e.g.
    ``{peft_type: LORA, r: 8, lora_alpha: 16}``); null fine-tunes every weight. Without
    ``target_modules`` the method's defaults for T5 apply. ``train_last`` keeps only each user's last
    N training examples: the window that is new since a base model trained with ``data.drop_last: N``.
    """

    from_model: str | None = None  # a saved run's model directory (model + tokenizer), e.g. runs/base/model
    peft: dict[str, Any] | None = None
    train_last: int | None = None


@dataclass
class EvaluationRecipe:
    num_beams: int = 20
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    batch_size: int = 256
    max_validation_users: int | None = None
    max_test_users: int | None = None
    show_user: int = 0
    # SASRec only: drop the items a user already has from its ranking, the protocol of some published SASRec
    # numbers. sidrec's default keeps them as candidates, as the generative models' beam search does.
    exclude_history: bool = False


# The core's sections, in the order a saved recipe lists them; the methods' sections come after ``training``.
CORE_BEFORE_METHODS = ("name", "task", "seed", "output_dir", "data", "embeddings", "quantizer", "model", "training")


def default_method_sections() -> dict[str, Any]:
    """Every registered method's recipe section with its defaults (a method is off until its recipe says so)."""
    return {name: cls() for name, cls in recipe_sections().items()}


@dataclass
class Recipe:
    """A run's settings. The core sections are fields; each method's section (``recipe.joint``,
    ``recipe.sasrec``, ...) lives in ``sections``, collected from the method registry, and reads as an
    attribute like the others."""

    name: str = "recipe"
    task: str = "sequential"  # sequential: next-SID generation; collaborative: DMRec's Mult-VAE setting
    seed: int = 42
    output_dir: str = "runs/recipe"
    data: DataConfig = field(default_factory=lambda: DataConfig(path="examples/data/amazon2018_scientific_5core"))
    embeddings: EmbeddingRecipe = field(default_factory=EmbeddingRecipe)
    quantizer: QuantizerRecipe = field(default_factory=QuantizerRecipe)
    model: ModelRecipe = field(default_factory=ModelRecipe)
    training: TrainingRecipe = field(default_factory=TrainingRecipe)
    finetune: FinetuneRecipe = field(default_factory=FinetuneRecipe)
    evaluation: EvaluationRecipe = field(default_factory=EvaluationRecipe)
    sections: dict[str, Any] = field(default_factory=default_method_sections, repr=False)

    def __getattr__(self, key: str) -> Any:
        """A method's section by its name (only reached when ``key`` is not a core field)."""
        sections = self.__dict__.get("sections")
        if sections is not None and key in sections:
            return sections[key]
        raise AttributeError(f"recipe has no section {key!r} (no registered method declares one)")

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain values: core sections, then each method's, then finetune, evaluation."""
        core = dataclasses.asdict(self)
        values = {key: core[key] for key in CORE_BEFORE_METHODS}
        values.update({name: dataclasses.asdict(section) for name, section in self.sections.items()})
        values.update(finetune=core["finetune"], evaluation=core["evaluation"])
        return values


def _build(cls, values: dict[str, Any], where: str, extra_keys: Any = ()):
    """``cls`` from a mapping; ``extra_keys`` are valid here too (the methods' sections, at the top level)."""
    if not isinstance(values, dict):
        raise RecipeError(f"recipe section {where or 'top level'} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "sections"}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            valid = [*fields, *extra_keys]
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RecipeError(
                f"unknown recipe key {where + '.' if where else ''}{key}.{hint} "
                f"Valid keys{' in ' + where if where else ''}: {', '.join(sorted(valid))}"
            )
        default = fields[key].default_factory() if fields[key].default_factory is not dataclasses.MISSING else None
        name = f"{where}.{key}" if where else key
        value = _coerce_number(value, fields[key].type, name)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise RecipeError(
                    f"recipe section {name} must be a mapping of its keys (e.g. {name}: {{...}}), got {value!r}"
                )
            value = _build(type(default), value, name)
        else:
            _check_kind(value, fields[key].type, name)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise RecipeError(f"recipe section {where or 'top level'}: {error}") from error


def _coerce_number(value: Any, annotation: Any, where: str) -> Any:
    """YAML reads ``1e-5`` (no dot) as a string; a float setting takes it as the number it means."""
    if str(annotation) == "dict[str, float]" and isinstance(value, dict):  # learning rates per prefix
        return {name: _coerce_number(rate, "float", f"{where}.{name}") for name, rate in value.items()}
    if not isinstance(value, str) or not str(annotation).startswith("float"):
        return value
    try:
        return float(value)
    except ValueError:
        raise RecipeError(f"recipe key {where} must be a number, got {value!r}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_KINDS = {  # annotation (without `| None`) -> (test, what the message asks for)
    "int": (_is_int, "a whole number"),
    "float": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "list[int]": (lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of whole numbers, e.g. [5, 10, 20]"),
    "dict[str, Any]": (lambda v: isinstance(v, dict), "a mapping, e.g. {ce: 1.0}"),
    "dict[str, float]": (
        lambda v: isinstance(v, dict) and all(_is_int(r) or isinstance(r, float) for r in v.values()),
        "a mapping of names to numbers",
    ),
}


def _check_kind(value: Any, annotation: Any, where: str) -> None:
    """A number, flag, list or mapping setting of the wrong kind fails here, naming the key, not deep in a run."""
    base, _, optional = str(annotation).partition(" | ")
    if value is None and optional == "None":
        return
    kind = _KINDS.get(base)
    if kind is not None and not kind[0](value):
        raise RecipeError(f"recipe key {where} must be {kind[1]}{' or null' if optional else ''}, got {value!r}")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise RecipeError(f"override {dotted!r}: {key!r} is not a section")
    tree[leaf] = value


def known_keys(values: Any, cls: type) -> Any:
    """``values`` without the keys that dataclass ``cls`` (and its section dataclasses) does not know.

    For reading a ``recipe.yaml`` an older sidrec wrote (model cards, a method's card settings): keys since
    removed are dropped there, where they can no longer mean anything, rather than refused.
    """
    if not isinstance(values, dict) or not dataclasses.is_dataclass(cls):
        return values
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kept = {}
    for key, value in values.items():
        if key in fields:
            default = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
            section = type(default()) if default is not None else None
            kept[key] = known_keys(value, section) if section is not None else value
    return kept


def recipe_from_dict(values: dict[str, Any]) -> Recipe:
    """Build a :class:`Recipe`, rejecting unknown keys with a hint (method sections come from the registry)."""
    if not isinstance(values, dict):
        raise RecipeError(f"recipe section top level must be a mapping, got {type(values).__name__}")
    known = recipe_sections()
    core = {key: value for key, value in values.items() if key not in known}
    if "sections" in core:
        raise RecipeError("unknown recipe key sections: method sections are top-level keys (e.g. joint: {...})")
    recipe = _build(Recipe, core, "", extra_keys=known)
    for key, value in values.items():
        if key in known:
            if not isinstance(value, dict):
                raise RecipeError(
                    f"recipe section {key} must be a mapping of its keys (e.g. {key}: {{...}}), got {value!r}"
                )
            recipe.sections[key] = _build(known[key], value, key)
    if not isinstance(recipe.data, DataConfig):
        raise RecipeError("recipe key data must be a mapping with at least `path`")
    if recipe.task not in TASKS:
        raise RecipeError(f"recipe key task must be one of {TASKS}, got {recipe.task!r}")
    return recipe


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe over its ``base:`` chain (``recipe_files``) and apply ``section.key=value`` overrides
    (values parsed as YAML)."""
    values = read_recipe_values(path)
    for override in overrides or []:
        if "=" not in override:
            raise RecipeError(f"override {override!r} must look like section.key=value, e.g. training.epochs=3")
        key, raw = override.split("=", 1)
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise RecipeError(
                f"override {override!r}: the value is not valid YAML ({_one_line(error)}); "
                "quote it or close its brackets"
            ) from None
        _set_dotted(values, key.strip().lstrip("-"), parsed)
    return recipe_from_dict(values)


def collaborative_recipe(recipe: Recipe) -> Recipe:
    """The SASRec recipe ``embeddings.collaborative_recipe`` names, on ``recipe``'s data, in its cache folder.

    The SASRec keeps its own seed and training budget (its early stopping), so every seed and budget of a
    grid reads one converged table; only the data (path, filters, history length) comes from ``recipe``,
    so that the items line up. The folder's name is a hash of the SASRec recipe's text and that data.
    """
    path = Path(recipe.embeddings.collaborative_recipe)
    sasrec = load_recipe(path)
    if not method_name(sasrec).startswith("sasrec"):  # the item table collaborative codes read
        raise RecipeError(
            f"embeddings.collaborative_recipe={path} does not train a SASRec (sasrec.enabled is false): name a "
            "SASRec recipe such as configs/scientific-sasrec.yaml"
        )
    sasrec.data = copy.deepcopy(recipe.data)
    blob = json.dumps([path.read_text(), dataclasses.asdict(recipe.data)], sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    sasrec.output_dir = str(Path(recipe.embeddings.cache_dir).parent / "collaborative" / f"{path.stem}-{key}")
    return sasrec


def check_recipe(recipe: Recipe) -> None:
    """Settings that cannot work together, caught before minutes of embedding and fitting."""
    from .finetune import peft_config  # peft is heavy; only recipes are checked here, not imported eagerly

    finetune = recipe.finetune
    if (finetune.peft is not None or finetune.train_last is not None) and not finetune.from_model:
        raise RecipeError(
            "finetune.peft and finetune.train_last adapt a saved model: set finetune.from_model to its "
            "directory (e.g. runs/scientific-window-base/model)"
        )
    if finetune.peft is not None:
        peft_config(finetune.peft)  # a bad method or option fails here, not after loading the data
    generative = recipe.task == "sequential" and first_answer("task", recipe) is None  # beam search over codes
    if recipe.model.attn_implementation not in ATTENTION_KERNELS:
        raise RecipeError(
            f"model.attn_implementation must be one of {ATTENTION_KERNELS}, got {recipe.model.attn_implementation!r}"
        )
    if recipe.training.precision not in PRECISIONS:
        raise RecipeError(f"training.precision must be one of {PRECISIONS}, got {recipe.training.precision!r}")
    e = recipe.evaluation
    if not e.ks or min(e.ks) < 1:
        raise RecipeError(f"evaluation.ks must be positive cut-offs, e.g. [5, 10, 20]; got {e.ks}")
    needed = 20 if recipe.task == "collaborative" else 10  # the cut-off early stopping and the best model read
    if needed not in e.ks:
        metric = "recall@20" if needed == 20 else "ndcg@10"
        raise RecipeError(
            f"evaluation.ks must include {needed}: early stopping follows validation {metric}; got {e.ks}"
        )
    if generative and max(e.ks) > e.num_beams:
        raise RecipeError(
            f"evaluation.ks reaches {max(e.ks)} but beam search returns evaluation.num_beams={e.num_beams} items "
            f"per user: set evaluation.num_beams >= {max(e.ks)} or drop the larger cut-offs"
        )
    if recipe.quantizer.codes_from and not generative:
        raise RecipeError("quantizer.codes_from gives a semantic-ID model its codes; this recipe trains none")
    if recipe.quantizer.codes_from and finetune.from_model:
        refuse_with_codes_from("finetune.from_model (the saved model brings its own codes)")
    if recipe.quantizer.method not in QUANTIZER_METHODS:
        raise RecipeError(f"quantizer.method must be one of {QUANTIZER_METHODS}, got {recipe.quantizer.method!r}")
    rqvae = recipe.quantizer.method == "rqvae"
    if generative and not finetune.from_model and rqvae and recipe.quantizer.epochs < 1:
        raise RecipeError(f"quantizer.epochs must be at least 1 (the RQ-VAE is fitted), got {recipe.quantizer.epochs}")
    _check_sizes(recipe)
    _check_embedding_source(recipe)
    _check_keep_shards(recipe)
    check_method_settings(recipe)


def check_method_settings(recipe: Recipe) -> dict[str, Any]:
    """Every registered method's own rules, in the order they registered; returns the recipe's objectives."""
    objectives = build_objectives(recipe.training.objectives)
    for method in registered_methods():
        if method.check is not None:
            method.check(recipe, objectives)
    return objectives


def refuse_with_codes_from(setting: str) -> None:
    """``quantizer.codes_from`` takes a saved run's codes as they are: a method that makes its own refuses it."""
    raise RecipeError(
        f"quantizer.codes_from takes a saved run's codes as they are; it cannot be combined with {setting}: "
        "drop one of the two"
    )


def refuse_keep_shards(setting: str) -> None:
    """``embeddings.keep_shards`` leaves the table on disk: a method that holds the whole table refuses it."""
    raise RecipeError(
        f"embeddings.keep_shards serves TIGER's text codes only; this recipe also sets {setting}, which needs the "
        "whole table in memory: set embeddings.keep_shards: false"
    )


# Settings that count something: (section, key, smallest sensible value, what it counts). Checked as exact
# whole numbers, so `0` is never read as "all" and `2.5` or `true` are never rounded.
_COUNTS = (
    ("quantizer", "num_levels", 1, "residual codebooks"),
    ("quantizer", "codebook_size", 2, "codes per level (with one code every item of a level shares it)"),
    ("quantizer", "latent_dim", 1, "latent width"),
    ("quantizer", "batch_size", 1, "items per RQ-VAE batch"),
    ("quantizer", "kmeans_iterations", 1, "Lloyd steps"),
    ("model", "d_model", 1, "model width"),
    ("model", "d_kv", 1, "width of each attention head"),
    ("model", "d_ff", 1, "feed-forward width"),
    ("model", "num_layers", 1, "encoder layers"),
    ("model", "num_decoder_layers", 1, "decoder layers"),
    ("model", "num_heads", 1, "attention heads"),
    ("model", "num_user_buckets", 0, "hashed user tokens (0 = none)"),
    ("training", "batch_size", 1, "examples per batch"),
    ("evaluation", "num_beams", 1, "beams"),
    ("evaluation", "batch_size", 1, "users per evaluation batch"),
)
# Optional user limits: None means every user; a number must be a positive count.
_USER_LIMITS = (("evaluation", "max_validation_users"), ("evaluation", "max_test_users"))


def _check_sizes(recipe: Recipe) -> None:
    """Every count is an exact whole number in range, named with its section and what it counts."""
    for section, key, smallest, meaning in _COUNTS:
        value = getattr(getattr(recipe, section), key)
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            raise RecipeError(
                f"{section}.{key} counts {meaning} and must be a whole number >= {smallest}, got {value!r}"
            )
    for section, key in _USER_LIMITS:
        value = getattr(getattr(recipe, section), key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RecipeError(
                f"{section}.{key} must be a positive number of users, or null for all of them; got {value!r} "
                "(0 does not mean 'all': leave the key out)"
            )


def _check_keep_shards(recipe: Recipe) -> None:
    """``embeddings.keep_shards`` gives the RQ-VAE a table on disk; the methods that hold the table cannot take one."""
    if not recipe.embeddings.keep_shards:
        return
    holders = {
        f"embeddings.source={recipe.embeddings.source!r}": recipe.embeddings.source != "text",
        f"task={recipe.task!r}": recipe.task != "sequential",
    }
    held = [name for name, on in holders.items() if on]
    if held:  # the methods that hold the table refuse it in their own rules
        refuse_keep_shards(", ".join(held))


def _check_embedding_source(recipe: Recipe) -> None:
    from .collaborative import EMBEDDING_SOURCES

    embeddings = recipe.embeddings
    if embeddings.source not in EMBEDDING_SOURCES:
        raise RecipeError(f"embeddings.source must be one of {list(EMBEDDING_SOURCES)}, got {embeddings.source!r}")
    run, sasrec_recipe = embeddings.collaborative_run, embeddings.collaborative_recipe
    if sasrec_recipe:
        cached = collaborative_recipe(recipe).output_dir  # the file exists and trains a SASRec
        if run and Path(run) != Path(cached):  # a run's saved recipe holds both: the run is the recipe's cache
            raise RecipeError(
                "set one of embeddings.collaborative_run (a finished SASRec run) and embeddings.collaborative_recipe "
                f"(a SASRec recipe to train and cache), not both; got {run} and {sasrec_recipe}"
            )
        return
    if "collaborative" in embeddings.source and not run:
        raise RecipeError(
            f"embeddings.source={embeddings.source} quantises a SASRec run's item table: set "
            "embeddings.collaborative_run to a finished SASRec run's output_dir (e.g. runs/scientific-sasrec), or "
            "embeddings.collaborative_recipe to a SASRec recipe (e.g. configs/scientific-sasrec.yaml)"
        )
    if run and not (Path(run) / "model" / "config.json").exists():
        raise RecipeError(
            f"embeddings.collaborative_run={run} holds no saved model (model/config.json): train the SASRec first, "
            f"`python train.py --config configs/scientific-sasrec.yaml output_dir={run}`"
        )
