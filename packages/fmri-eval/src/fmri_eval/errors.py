"""The one exception type users of fmri_eval need to catch."""


class EvaluationError(ValueError):
    """Bad input to an evaluation; the message is one line: what was wrong and what to do."""
