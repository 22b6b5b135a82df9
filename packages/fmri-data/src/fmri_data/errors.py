"""The one exception type users see from fmri_data.

Every message is a single line that says what was wrong, where, and what to do, so that apps can print it
as it is and exit non-zero instead of showing a traceback.
"""


class DataError(ValueError):
    """Bad or unusable input data (a missing file, a wrong key, a leaking split, ...)."""
