"""The one error type the CLI turns into a message and exit status 2.

Anything the user can fix (a bad config value, a missing file, two stages offering one output)
is raised as `UserError` with text that already names the file, the field and what is allowed.
Every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input; `str()` is the complete message, one problem per line."""

    def __init__(self, *problems: str):
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))
