"""The one exception type users of fmri_eval need to catch."""

from typing import ClassVar


class EvaluationError(ValueError):
    """Bad input to an evaluation; the message is one line: what was wrong and what to do.

    `user_error = True` is the mark by which the apps' error handler (fmri_data.errors.run_cli) tells the
    user's mistakes from bugs; fmri_eval installs and works alone, so it carries the mark instead of
    importing fmri_data's UserError.
    """

    user_error: ClassVar[bool] = True
