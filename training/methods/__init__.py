"""The methods that ship, one module each; importing this package registers them.

- ``sasrec``: the ID-based floor (no semantic IDs), full-softmax or one-negative BCE;
- ``dmrec``: distribution matching, over DMRec-T5 or the paper's Mult-VAE;
- ``diger`` (a package): joint training of the tokenizer with the recommender;
- ``etegrec``: ETEGRec's two alignment losses between the recommender and its tokenizer;
- ``soda``: the distribution-level BPR objective;
- ``letter``: LETTER's collaborative and diversity regularisers on the RQ-VAE fit.

TIGER is the base every method builds on (static RQ-VAE codes, next-SID cross-entropy) and needs no
module of its own. A new method is one module that registers a ``registry.Method`` (its recipe section,
rules, name and hooks) and its objectives (``register_objective``), one recipe in ``configs/`` and one
docs page; ``sidrec.training`` imports this package, so a shipped method is also one import below.
"""

from __future__ import annotations

# isort: off
# Imported in the order their rules are checked and their names tried (the registry keeps this order).
from . import sasrec, dmrec, diger, etegrec, soda, letter

# isort: on
from ..objectives import OBJECTIVES, Objective, build_objectives, register_objective
from ..registry import method_name, registered_methods

METHOD_MODULES = (sasrec, dmrec, diger, etegrec, soda, letter)

__all__ = [
    "METHOD_MODULES",
    "OBJECTIVES",
    "Objective",
    "build_objectives",
    "diger",
    "dmrec",
    "etegrec",
    "letter",
    "method_name",
    "register_objective",
    "registered_methods",
    "sasrec",
    "soda",
]
