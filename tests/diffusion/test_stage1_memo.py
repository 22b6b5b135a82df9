"""Stage 1 is fitted once per training set when both Brain-Diffuser rows run, and never shared otherwise."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace

from fmri_diffusion.methods.brain_diffuser.memo import Stage1Memo


def test_the_same_training_set_and_settings_reuse_the_fit(linear_dataset):
    memo, fits = Stage1Memo(), []

    def fit(label):
        return lambda: fits.append(label) or label

    assert memo.fitted(linear_dataset, "a", fit("first")) == "first"
    assert memo.fitted(linear_dataset, "a", fit("again")) == "first"  # reused
    assert memo.fitted(linear_dataset, "b", fit("other settings")) == "other settings"
    look_alike = replace(linear_dataset)  # equal content, another object: not trusted to be the same set
    assert memo.fitted(look_alike, "b", fit("look-alike")) == "look-alike"
    assert fits == ["first", "other settings", "look-alike"]


class _Parts:
    """Stands for a fitted stage 1 (a weak reference to it shows when it is freed)."""


def test_the_fit_is_freed_with_its_training_set(linear_dataset):
    memo = Stage1Memo()
    train = replace(linear_dataset)
    parts = memo.fitted(train, "a", _Parts)
    held = weakref.ref(parts)
    del parts
    gc.collect()
    assert held() is not None  # kept while its training set lives
    del train
    gc.collect()
    assert held() is None  # not held past the fold it belongs to
