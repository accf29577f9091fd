"""The one exception type that carries a message meant for the user."""


class UserError(Exception):
    """A problem with the user's input or environment, with what to do about it.

    The CLI prints ``str(error)`` without a traceback and exits with status 2; the
    dashboard shows it with ``st.error``. Raise it wherever a user-supplied value is
    refused, and say what to do instead.
    """
