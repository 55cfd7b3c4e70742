"""The error types every module raises towards the user.

``InputError`` is the one exception for input that cannot be processed: its message names the
problem and the fix, the command line prints it and exits with status 2, and the Slicer panels show
it in an error dialog. ``ProcessingCancelled`` is raised when the user cancels a running job; the
logic leaves the scene as it was before the job started.
"""


class InputError(ValueError):
    """Input that cannot be processed; the message says what is wrong and how to fix it."""


class ProcessingCancelled(Exception):
    """The user cancelled a running job; nothing was added to the scene or written."""
