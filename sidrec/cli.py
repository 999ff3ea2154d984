"""The ``sidrec`` command line: ``sidrec train``, ``recommend``, ``card`` and ``push-dataset``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def resume_checkpoint(recipe, requested: str, args: argparse.Namespace) -> str:
    """The checkpoint directory to resume from: ``requested``, or the last one of the run's output_dir."""
    from transformers.trainer_utils import get_last_checkpoint

    if args.overwrite_output_dir:
        raise ValueError("--resume_from_checkpoint continues a run; --overwrite_output_dir would delete it: use one")
    checkpoints = Path(recipe.output_dir) / "checkpoints"
    found = get_last_checkpoint(str(checkpoints)) if requested == "last" and checkpoints.is_dir() else None
    path = Path(found or (requested if requested != "last" else checkpoints))
    if not (path / "trainer_state.json").exists():
        raise FileNotFoundError(
            f"no checkpoint to resume from at {path} (a checkpoint directory holds trainer_state.json). Pass "
            "--resume_from_checkpoint <output_dir>/checkpoints/checkpoint-<step>, or start the run again without it"
        )
    return str(path)


def train(args: argparse.Namespace) -> dict:
    """Run the recipe; then, from the main process, upload what the flags ask for.

    ``--push_to_hub`` uploads the saved model directory (for a PEFT run, the merged model);
    ``--hub_adapter_id`` uploads a PEFT run's adapter, naming ``finetune.from_model`` as its base when
    that is a Hub repository. Both are checked before training, so a wrong flag does not cost a run.
    """
    from accelerate import PartialState

    from .training.pipeline import run
    from .training.recipe import load_recipe

    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id user/name (the Hub repository to create or update)")
    recipe = load_recipe(args.config, args.overrides)
    if args.hub_adapter_id and recipe.finetune.peft is None:
        raise ValueError(
            "--hub_adapter_id uploads a PEFT adapter, but this recipe trains none: set finetune.from_model and "
            "finetune.peft (e.g. finetune.peft={peft_type: LORA, r: 8}), or use --push_to_hub for the whole model"
        )
    overrides = {}
    if getattr(args, "resume_from_checkpoint", None):
        overrides["resume_from_checkpoint"] = resume_checkpoint(recipe, args.resume_from_checkpoint, args)
    metrics = run(recipe, overwrite_output_dir=args.overwrite_output_dir, trainer_overrides=overrides)
    if not PartialState().is_main_process:
        return metrics
    output_dir = Path(recipe.output_dir)
    if args.push_to_hub or args.hub_adapter_id:  # the cards name the repositories they are uploaded to
        from .model_cards.card import write_model_card

        base = recipe.finetune.from_model
        base_model = base if base and not Path(base).exists() else None
        write_model_card(output_dir, args.hub_model_id, args.hub_adapter_id, base_model)
    if args.push_to_hub:
        from .hub import push_recommender

        commit = push_recommender(output_dir / "model", args.hub_model_id, private=args.hub_private)
        print(f"Pushed {output_dir}/model to {commit.commit_url}")
    if args.hub_adapter_id:
        from .hub import push_adapter
        from .model_cards.card import ADAPTER_DIR

        commit = push_adapter(
            output_dir / ADAPTER_DIR, args.hub_adapter_id, base_model=base_model, private=args.hub_private
        )
        print(f"Pushed {output_dir / ADAPTER_DIR} to {commit.commit_url}")
    return metrics


def _train(args: argparse.Namespace) -> int:
    train(args)
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from .recommender import Recommender

    recommender = Recommender.from_pretrained(args.model_dir)
    rows = recommender.recommend(
        args.history, top_k=args.top_k, num_beams=args.num_beams, user=args.user, exclude_history=args.exclude_history
    )
    for row in rows:
        print(f"{row.rank:>3}. {row.item_id:>10}  {row.score:8.3f}  {row.title}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from .model_cards.card import write_model_card

    path = write_model_card(
        args.run_dir, repo_id=args.repo_id, adapter_repo_id=args.adapter_repo_id, base_model=args.base_model
    )
    print(f"Wrote {path}")
    return 0


def _push_dataset(args: argparse.Namespace) -> int:
    from .hub import push_dataset

    data = None
    if args.recipe:  # read the folder with that recipe's data settings (column names, text fields, k-core)
        from .training.recipe import load_recipe

        data = load_recipe(args.recipe).data
    commit = push_dataset(
        args.folder,
        args.repo_id,
        data=data,
        license=args.license,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
    )
    print(f"Pushed {args.folder} to {commit.pr_url or commit.commit_url}")
    revision = f"@{args.revision}" if args.revision and not args.create_pr else ""
    print(f"A recipe reads it with data.path: hf://datasets/{commit.repo_url.repo_id}{revision}")
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--top-k 0`` or ``-3`` is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidrec", description="Generative recommendation with semantic IDs.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="run a YAML recipe end to end")
    add_train_arguments(train)
    train.set_defaults(handler=_train)
    recommend = commands.add_parser("recommend", help="top-k items for a history, from a saved model directory")
    recommend.add_argument("model_dir", help="a saved run's model directory, e.g. runs/demo/model")
    recommend.add_argument("--history", nargs="+", required=True, help="raw item ids, oldest first")
    recommend.add_argument("--top-k", type=_positive_int, default=10)
    recommend.add_argument("--num-beams", type=_positive_int, default=None)
    recommend.add_argument("--user", default=None, help="raw user id, for a model trained with a user token")
    recommend.add_argument(
        "--exclude-history", action="store_true", help="drop the history's own items (default: kept, as evaluated)"
    )
    recommend.set_defaults(handler=_recommend)
    card = commands.add_parser("card", help="write a saved run's model card to <run_dir>/model/README.md")
    card.add_argument("run_dir", help="a finished run's directory (holding metrics.json), e.g. runs/demo")
    card.add_argument("--repo-id", default=None, help="Hub repository the card names and its usage code loads")
    card.add_argument("--adapter-repo-id", default=None, help="a PEFT run: Hub repository of its adapter")
    card.add_argument("--base-model", default=None, help="a PEFT run: Hub repository of the base model")
    card.set_defaults(handler=_card)
    push = commands.add_parser(
        "push-dataset", help="upload a data folder to a Hub dataset repository, with a generated dataset card"
    )
    push.add_argument("folder", help="a data folder, e.g. examples/data/amazon2018_scientific_5core")
    push.add_argument("repo_id", help="the dataset repository to create or update, e.g. user/scientific")
    push.add_argument(
        "--recipe", default=None, help="read the folder with this recipe's data settings (default: the defaults)"
    )
    push.add_argument(
        "--license", default="unknown", help="a Hub licence id for the card's header, e.g. cc-by-4.0 (default: unknown)"
    )
    push.add_argument("--revision", default=None, help="push to this branch (created from main if needed)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to a branch")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.set_defaults(handler=_push_dataset)
    return parser


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML recipe, e.g. configs/scientific-tiger-demo.yaml")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="replace a finished run in output_dir")
    parser.add_argument(
        "--resume_from_checkpoint",
        nargs="?",
        const="last",
        default=None,
        help="continue an interrupted run from a checkpoint directory (no value: the last one in output_dir)",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the saved model directory to the Hub")
    parser.add_argument("--hub_model_id", default=None, help="Hub repository for --push_to_hub, e.g. user/name")
    parser.add_argument(
        "--hub_adapter_id", default=None, help="a PEFT fine-tuning run: upload its adapter to this Hub repository"
    )
    parser.add_argument("--hub_private", action="store_true", help="create the Hub repositories as private")
    parser.add_argument("overrides", nargs="*", help="recipe overrides such as training.epochs=3")


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, letting ``key=value`` overrides stand before and after flags (``a=1 --overwrite_output_dir b=2``).

    argparse stops filling a ``nargs="*"`` positional at the first flag; the rest would be an error.
    """
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(build_parser(), argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"sidrec: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
