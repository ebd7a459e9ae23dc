"""The one exception type users see: a clear, one-line message naming the culprit."""


class ContrastiveError(Exception):
    """Bad input or configuration, reported to the user without a traceback by the CLI."""


def user_message(error: ContrastiveError) -> str:
    """The error's message, without the traceback a DataLoader worker wraps it in.

    An error raised in a worker process reaches the main one as the same type, but its
    message is "Caught ContrastiveError in DataLoader worker process 0. Original Traceback
    ...": only the last line is the message a person should read.
    """
    text = str(error)
    marker = f"{ContrastiveError.__name__}: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text
