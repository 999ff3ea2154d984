"""The errors a recipe raises, in a module of their own so every recipe section can import them."""


class RecipeError(ValueError):
    """A recipe that cannot be run as written; the message names the setting and the fix."""
