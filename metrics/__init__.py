"""The ranking metrics as a Hugging Face ``evaluate`` module, shipped inside the package.

``evaluate.load(sidrec.metrics.SID_RANKING)`` works from a clone and from an installed wheel alike:
the module's folder is package data.
"""

from pathlib import Path

SID_RANKING = str(Path(__file__).with_name("sid_ranking"))

__all__ = ["SID_RANKING"]
