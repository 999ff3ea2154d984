"""The errors a recipe or a saved model directory raises, in a module of their own so every part can import them."""


class RecipeError(ValueError):
    """A recipe that cannot be run as written; the message names the setting and the fix."""


class ModelDirectoryError(ValueError):
    """A saved model directory whose files are damaged or disagree; the message names the file and the fix."""
