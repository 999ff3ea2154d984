"""The method registry: everything a method adds to a run, declared once, in the method's own module.

A method module builds one :class:`Method` and passes it to :func:`register_method` when it is imported
(``sidrec.training`` imports the methods that ship; a user's module registers itself the same way). The
core never names a method: the recipe schema collects the methods' sections from here
(:func:`recipe_sections`), a run's name is assembled from their name parts (:func:`method_name`), and the
run asks them for the parts they change (model, code fit, metrics, model card, or a whole task of
their own). This module imports no method and no recipe, so it closes no import cycle.

Every hook is optional and is called with the run's :class:`~sidrec.training.recipe.Recipe`; a hook
that does not apply to a recipe returns None (or False, or an empty dict).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    """What one method adds to sidrec. Only ``name`` is required; the rest are hooks and recipe sections.

    - ``sections``: recipe section name -> its dataclass (``joint: JointRecipe``), defaults filled in.
    - ``check(recipe, objectives)``: the method's recipe rules, raised as ``RecipeError`` before any work.
    - ``run_name(recipe)``: the run's base name when this method decides it, with the codes' source suffix
      where it takes one (``sasrec``, ``diger-...-cf``; ``SOURCE_SUFFIXES`` are TIGER's), else None.
      Without any, a run is ``tiger`` with its source suffix.
    - ``name_suffix(recipe)``: appended to any run's name (a plug-in objective: ``+soda``), else "".
    - ``task(recipe)``: a whole task of its own (SASRec, Mult-VAE) as a ``training.tasks`` task, else None.
    - ``reads_text(recipe)``: the model reads the catalogue's text embeddings besides its codes (DMRec).
    - ``needs_collaborative(recipe)``: the code fit reads a SASRec run's item table (LETTER).
    - ``code_fit(recipe, collaborative)``: extra arguments to the RQ-VAE fit (``regularizer``,
      ``sinkhorn_epsilon``, ``sinkhorn_levels``), else None.
    - ``living_codes(recipe)``: the model carries and trains its own code table (DIGER): a resumed run
      restores it from the checkpoint instead of reading the tokenizer's.
    - ``build_model(recipe, parts)``: the model to train instead of SID-T5, as a ``stages.models.BuiltModel``
      (``parts``: ``ModelParts`` with the config, the code fit, the embeddings, the tokenizer), else None.
    - ``extra_metrics(recipe, model, tokenizer)``: metrics to add to ``metrics.json`` after the test.
    - ``card_settings(recipe_dict)``: the method's settings for the model card (read from a saved
      ``recipe.yaml``, so older runs may lack keys), else None.
    """

    name: str
    sections: Mapping[str, type] = field(default_factory=dict)
    check: Callable[..., None] | None = None
    run_name: Callable[..., str | None] | None = None
    name_suffix: Callable[..., str] | None = None
    task: Callable[..., Any] | None = None
    reads_text: Callable[..., bool] | None = None
    needs_collaborative: Callable[..., bool] | None = None
    code_fit: Callable[..., dict[str, Any] | None] | None = None
    living_codes: Callable[..., bool] | None = None
    build_model: Callable[..., Any] | None = None
    extra_metrics: Callable[..., dict[str, float]] | None = None
    card_settings: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None


# TIGER's suffixes for the codes' source: ``tiger-cf`` (collaborative codes), ``letter-textcf`` (both).
SOURCE_SUFFIXES = {"text": "", "collaborative": "-cf", "text+collaborative": "-textcf"}

_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make ``method`` part of every run; returns it (so a module can keep it as ``METHOD``).

    Registering the same declaration again is a no-op (a module imported twice); a different method under
    a taken name, or a recipe section another method owns, is refused, since one of the two would be lost.
    """
    known = _METHODS.get(method.name)
    if known == method:
        return method
    if known is not None:
        raise ValueError(f"a method named {method.name!r} is already registered (from another module)")
    for other in _METHODS.values():
        taken = set(other.sections) & set(method.sections)
        if taken:
            raise ValueError(f"method {method.name!r}: recipe section(s) {sorted(taken)} belong to {other.name!r}")
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a registered method (a test's toy method, once the test is done)."""
    _METHODS.pop(name, None)


def registered_methods() -> tuple[Method, ...]:
    """Every registered method, in the order they registered (their rules are checked in this order)."""
    return tuple(_METHODS.values())


def recipe_sections() -> dict[str, type]:
    """Recipe section name -> dataclass, over every registered method."""
    return {name: cls for method in _METHODS.values() for name, cls in method.sections.items()}


def any_method(hook: str, *args: Any) -> bool:
    """Whether some registered method's ``hook`` answers true for these arguments."""
    return any(getattr(method, hook)(*args) for method in _METHODS.values() if getattr(method, hook) is not None)


def first_answer(hook: str, *args: Any) -> Any:
    """The first registered method's non-None answer to ``hook`` (None when none answers)."""
    for method in _METHODS.values():
        function = getattr(method, hook)
        answer = function(*args) if function is not None else None
        if answer is not None:
            return answer
    return None


def method_name(recipe: Any) -> str:
    """The short lowercase name of what a recipe trains, e.g. ``tiger``, ``tiger+soda``, ``letter``, ``tiger-cf``.

    The base name comes from the first method whose ``run_name`` answers (TIGER's, with its source suffix,
    when none does), and every plug-in's ``name_suffix`` follows. It is read from the recipe's sections,
    never from flags set later, so a run's model card, its ``metrics.json`` and the results harness all name
    a run the same way.
    """
    name = first_answer("run_name", recipe) or "tiger" + SOURCE_SUFFIXES[recipe.embeddings.source]
    return name + "".join(method.name_suffix(recipe) for method in _METHODS.values() if method.name_suffix is not None)
