"""Train a sidrec recipe: ``accelerate launch train.py --config configs/<recipe>.yaml [key=value ...]``."""

import argparse
import sys

import sidrec  # noqa: F401  (registers the Auto classes)
from sidrec.cli import add_train_arguments
from sidrec.training.pipeline import run
from sidrec.training.recipe import load_recipe

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser)
    args = parser.parse_args()
    try:
        run(load_recipe(args.config, args.overrides), overwrite_output_dir=args.overwrite_output_dir)
    except ValueError as error:  # bad recipe or data: one clear line, not a traceback
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)
