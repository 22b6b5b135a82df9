"""Image corpora for pre-training diffusion priors, screened against the test stimuli before any training.

from fmri_data.corpora import load_corpus
corpus = load_corpus("digits", 28).screened(test_images)   # near duplicates dropped and counted
corpus.screening.describe()                                 # the sentence report.md carries
"""

from fmri_data.corpora.builtin import detect_patch_grid
from fmri_data.corpora.corpus import BUILT_IN_CORPORA, PriorCorpus, load_corpus
from fmri_data.corpora.screening import LEAK_THRESHOLD, MAX_LEAK_FRACTION, CorpusScreening, screen_corpus

__all__ = [
    "BUILT_IN_CORPORA",
    "LEAK_THRESHOLD",
    "MAX_LEAK_FRACTION",
    "CorpusScreening",
    "PriorCorpus",
    "detect_patch_grid",
    "load_corpus",
    "screen_corpus",
]
