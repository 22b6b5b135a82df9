"""The fMRI side: per-subject input adapters into one shared residual MLP with vector and token heads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from fmri_data.errors import DataError

DEFAULT_SUBJECT = "default"


@dataclass
class FmriEncoderConfig:
    """Sizes of the fMRI encoder; the defaults suit data sets of ~100 trials.

    n_voxels: subject name -> voxel count; each subject gets its own linear adapter into the shared trunk.
    token_dim: width of each conditioning token (None: embed_dim).
    """

    n_voxels: dict[str, int] = field(default_factory=dict)
    hidden: int = 512
    n_blocks: int = 2
    dropout: float = 0.3
    embed_dim: int = 128
    n_tokens: int = 4
    token_dim: int | None = None

    @property
    def resolved_token_dim(self) -> int:
        return self.token_dim or self.embed_dim


class FmriEncoderOutput(NamedTuple):
    embedding: torch.Tensor  # [B, embed_dim], not normalised
    tokens: torch.Tensor  # [B, n_tokens, token_dim]


class ResidualBlock(nn.Module):
    """Pre-norm MLP block with a skip connection, so depth never hurts a small data set much."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class FmriEncoder(nn.Module):
    """Voxels -> (embedding vector, token sequence).

    The vector is read out of the flattened tokens, so the one contrastive loss trains both heads: the
    tokens become a representation a decoder can cross-attend to, the vector its pooled summary.
    """

    def __init__(self, config: FmriEncoderConfig) -> None:
        super().__init__()
        if not config.n_voxels:
            raise DataError("FmriEncoderConfig.n_voxels needs at least one subject")
        bad = [name for name in config.n_voxels if not name or "." in name]
        if bad:
            raise DataError(f"subject names must be non-empty and contain no '.', got {bad}")
        self.config = config
        width, token_dim = config.hidden, config.resolved_token_dim
        self.adapters = nn.ModuleDict({name: nn.Linear(n, width) for name, n in config.n_voxels.items()})
        self.stem = nn.Sequential(nn.LayerNorm(width), nn.GELU(), nn.Dropout(config.dropout))
        self.blocks = nn.Sequential(*(ResidualBlock(width, config.dropout) for _ in range(config.n_blocks)))
        self.norm = nn.LayerNorm(width)
        self.token_head = nn.Linear(width, config.n_tokens * token_dim)
        self.embed_head = nn.Linear(config.n_tokens * token_dim, config.embed_dim)

    def subject_name(self, subject: str | None) -> str:
        """The adapter to use: `subject`, or the only one there is when None."""
        names = list(self.adapters)
        if subject is None:
            if len(names) > 1:
                raise DataError(f"this encoder has several subjects ({', '.join(names)}); name one")
            return names[0]
        if subject not in self.adapters:
            raise DataError(f"unknown subject {subject!r}; this encoder knows {', '.join(names)}")
        return subject

    def forward(self, voxels: torch.Tensor, subject: str | None = None) -> FmriEncoderOutput:
        adapter = self.adapters[self.subject_name(subject)]
        if voxels.shape[-1] != adapter.in_features:
            raise DataError(
                f"got {voxels.shape[-1]} voxels, the subject's adapter takes {adapter.in_features}"
            )
        h = self.norm(self.blocks(self.stem(adapter(voxels))))
        tokens = self.token_head(h).view(len(voxels), self.config.n_tokens, self.config.resolved_token_dim)
        return FmriEncoderOutput(self.embed_head(tokens.flatten(1)), tokens)
