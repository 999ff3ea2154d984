"""sidrec.training: recipes, data, the run loop and the methods.

Importing it registers the methods that ship (``training.methods``), so every recipe knows their sections.
"""

from . import methods  # noqa: F401  (registers the shipped methods with the registry)
