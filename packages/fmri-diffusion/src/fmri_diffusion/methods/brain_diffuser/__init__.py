"""Brain-Diffuser (Ozcelik & VanRullen 2023): thin methods (methods.py) over small parts (parts.py: stage 1's
latent decoding, stage 2's guide ridges; prior.py: the prior's adaptation to the training images; memo.py:
stage 1 fitted once for both rows)."""

from fmri_diffusion.methods.brain_diffuser.methods import (
    BrainDiffuser,
    BrainDiffuserConfig,
    BrainDiffuserStage1,
)

__all__ = ["BrainDiffuser", "BrainDiffuserConfig", "BrainDiffuserStage1"]
