"""User-facing errors: the CLI prints the message on one line and exits 2 (never a traceback)."""


class UserError(Exception):
    """A mistake in the user's input or configuration (bad file, unknown name, bad option)."""
