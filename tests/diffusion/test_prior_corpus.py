"""A prior corpus reaches the base model only after it was screened against every test stimulus of the run."""

from __future__ import annotations

import numpy as np
import pytest

import fmri_diffusion.priors as priors
from fmri_data.corpora import PriorCorpus
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, reconstruct_over_splits
from fmri_data.methods.records import run_records
from fmri_data.splits import make_splits
from fmri_diffusion.priors.small import SmallBaseConfig


def _corpus(dataset, n_random=300, leaked=1, seed=0):
    """Random images plus `leaked` test stimuli of the given split, each shifted right by one pixel."""
    rng = np.random.default_rng(seed)
    size = dataset.image_shape[0]
    tested = dataset.images[dataset.given_test][::2][:leaked]  # distinct stimuli (two repeats each)
    shifted = np.zeros_like(tested)
    shifted[:, :, 1:] = tested[:, :, :-1]
    images = np.concatenate([rng.random((n_random, size, size)), shifted]).astype(np.float32)
    return PriorCorpus("toy", images)


def _run(dataset, corpus, tmp_path, **options):
    settings = MethodSettings(work_dir=tmp_path / "w", prior_corpus=corpus)
    return reconstruct_over_splits(
        dataset, make_splits(dataset, "given"), ["mean"], settings=settings, progress=False, **options
    )


def test_a_shifted_test_stimulus_is_dropped_and_counted(linear_dataset, tmp_path):
    result = _run(linear_dataset, _corpus(linear_dataset), tmp_path)
    assert result.prior_corpus.n_dropped == 1
    assert result.prior_corpus.n_images == 301
    assert any(note.startswith("prior corpus toy: 301 images, 1 dropped") for note in result.notes)
    assert run_records(result)["prior_corpus"]["n_dropped"] == 1


def test_a_leaking_corpus_is_refused_before_anything_runs_unless_allowed(linear_dataset, tmp_path):
    corpus = _corpus(linear_dataset, n_random=100, leaked=3)
    with pytest.raises(DataError, match="allow-corpus-leaks"):
        _run(linear_dataset, corpus, tmp_path)
    assert not (tmp_path / "w").exists()  # no fold folder was stamped, nothing was fitted
    result = _run(linear_dataset, corpus, tmp_path, allow_corpus_leaks=True)
    assert result.prior_corpus.n_dropped == 3
    assert any("CORPUS LEAKS ALLOWED" in note for note in result.notes)


def test_the_base_model_refuses_an_unscreened_corpus_and_is_cached_by_content(
    linear_dataset, tmp_path, monkeypatch
):
    corpus = _corpus(linear_dataset)
    config = SmallBaseConfig().quick()
    with pytest.raises(DataError, match="not screened"):
        priors.base_model_for(MethodSettings(prior_corpus=corpus), config, 8)

    seen = []
    monkeypatch.setattr(priors, "pretrain_small_base", lambda *a, corpus, **k: seen.append(corpus) or "model")
    screened = corpus.screened(linear_dataset.images[linear_dataset.given_test])
    assert priors.base_model_for(MethodSettings(prior_corpus=screened), config, 8) == "model"
    np.testing.assert_array_equal(seen[0], screened.images)
    keys = {config.key(8, 0, c.digest) for c in (screened, PriorCorpus("other", screened.images[1:]))}
    assert len(keys) == 2
    assert config.key(8, 0) not in keys
