"""Train a sidrec recipe: ``accelerate launch train.py --config configs/<recipe>.yaml [key=value ...]``.

``--push_to_hub --hub_model_id user/name`` uploads the saved model directory (weights, tokenizer with
its code table and quantizer, generation config, remote code) when the run has finished.
"""

import argparse
import sys

import sidrec  # noqa: F401  (registers the Auto classes)
from sidrec.cli import add_train_arguments, parse_arguments, train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser)
    args = parse_arguments(parser)
    try:
        train(args)
    except (ValueError, FileNotFoundError) as error:  # bad recipe, data or checkpoint: one clear line
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)
