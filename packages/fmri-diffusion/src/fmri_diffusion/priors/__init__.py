"""Base models (priors): a user's Stable Diffusion folder or cached id, or the small one pre-trained here."""

from __future__ import annotations

from fmri_data.corpora import PriorCorpus
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings
from fmri_diffusion.priors.cache import BaseModelCache
from fmri_diffusion.priors.loading import BaseModel, load_base_model
from fmri_diffusion.priors.small import SmallBaseConfig, pretrain_small_base


def base_model_for(
    settings: MethodSettings, config: SmallBaseConfig, image_size: int, cache: BaseModelCache | None = None
) -> BaseModel:
    """A method's base model: the user's `settings.pretrained`, else the small one for `image_size` px
    stimuli from `cache`, pre-trained (and cached) first where the cache lacks it, on the run's prior corpus
    (which must have been screened against the test stimuli) or the simulator's.

    The default cache is the run's cache_dir, else its work_dir: the small base then lies where a saved
    fine-tune's manifest can name it, so that load_method finds it again."""
    if settings.pretrained:
        return load_base_model(settings.pretrained, allow_download=settings.allow_download)
    corpus = screened_corpus(settings)
    cache = cache or BaseModelCache(settings.cache_dir or settings.work_dir)
    config = config.under(settings)
    key = config.key(image_size, settings.seed, None if corpus is None else corpus.digest)
    cached = cache.load(key)
    if cached is not None:
        return cached
    model = pretrain_small_base(
        config,
        image_size,
        seed=settings.seed,
        device=settings.device,
        progress=settings.shows_progress(),
        corpus=None if corpus is None else corpus.images,
    )
    return cache.save(key, model)


def screened_corpus(settings: MethodSettings) -> PriorCorpus | None:
    """The run's prior corpus, refused unless it was screened against the test stimuli (None: none named)."""
    corpus = settings.prior_corpus
    if corpus is not None and corpus.screening is None:
        raise DataError(
            f"prior corpus {corpus.name} was not screened against the test stimuli; screen it first "
            "(PriorCorpus.screened, which reconstruct_over_splits runs)"
        )
    return corpus
