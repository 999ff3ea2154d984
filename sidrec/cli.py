"""The ``sidrec`` command line: ``sidrec train`` and ``sidrec recommend``."""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from .training.pipeline import run
    from .training.recipe import load_recipe

    run(load_recipe(args.config, args.overrides), overwrite_output_dir=args.overwrite_output_dir)
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from .training.recommender import Recommender

    recommender = Recommender.from_pretrained(args.model_dir)
    for row in recommender.recommend(args.history, top_k=args.top_k, num_beams=args.num_beams):
        print(f"{row.rank:>3}. {row.item_id:>10}  {row.score:8.3f}  {row.title}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidrec", description="Generative recommendation with semantic IDs.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="run a YAML recipe end to end")
    add_train_arguments(train)
    train.set_defaults(handler=_train)
    recommend = commands.add_parser("recommend", help="top-k items for a history, from a saved model directory")
    recommend.add_argument("model_dir", help="a saved run's model directory, e.g. runs/demo/model")
    recommend.add_argument("--history", nargs="+", required=True, help="raw item ids, oldest first")
    recommend.add_argument("--top-k", type=int, default=10)
    recommend.add_argument("--num-beams", type=int, default=None)
    recommend.set_defaults(handler=_recommend)
    return parser


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML recipe, e.g. configs/scientific-tiger-demo.yaml")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="replace a finished run in output_dir")
    parser.add_argument("overrides", nargs="*", help="recipe overrides such as training.epochs=3")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"sidrec: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
