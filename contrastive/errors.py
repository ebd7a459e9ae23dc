"""The one exception type users see: a clear, one-line message naming the culprit."""


class ContrastiveError(Exception):
    """Bad input or configuration, reported to the user without a traceback by the CLI."""
