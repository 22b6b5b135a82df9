"""fMRI (or a first-stage decoding of it) -> K condition tokens for a UNet's cross-attention.

The default shape follows the earlier project's conditioner (Linear -> ReLU -> Linear -> LayerNorm), emitting
K tokens of the UNet's cross_attention_dim, plus a learned null condition: classifier-free guidance trains the
UNet with the null tokens in place of the real ones some of the time and contrasts the two at sampling time.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class FmriConditioner(ModelMixin, ConfigMixin):
    """An MLP from an input vector [B, in_features] to condition tokens [B, n_tokens, token_dim].

    A diffusers model, so it saves with save_pretrained and loads with from_pretrained beside the UNet.
    """

    @register_to_config
    def __init__(
        self,
        in_features: int,
        token_dim: int,
        n_tokens: int = 4,
        hidden: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_tokens * token_dim),
        )
        self.norm = nn.LayerNorm(token_dim)
        self.null_tokens = nn.Parameter(torch.randn(n_tokens, token_dim) * 0.02)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        tokens = self.net(inputs).view(len(inputs), self.config.n_tokens, self.config.token_dim)
        return self.norm(tokens)

    def null(self, batch_size: int) -> torch.Tensor:
        """The unconditional tokens, [batch_size, n_tokens, token_dim]."""
        return self.null_tokens.unsqueeze(0).expand(batch_size, -1, -1)

    def drop(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Replace the tokens of rows where `keep` [B] is False by the null tokens (condition dropout)."""
        return torch.where(keep[:, None, None], tokens, self.null(len(tokens)).to(tokens.dtype))


class GivenTokens(nn.Module):
    """Condition tokens given directly (e.g. CLIP image embeddings), flattened; the null condition is zeros.

    Stands where an FmriConditioner would in ConditionedUNet, for a base model whose condition tokens come
    from a frozen pretrained encoder (an image-variation model's CLIP image embeddings).
    """

    def __init__(self, n_tokens: int, token_dim: int) -> None:
        super().__init__()
        self.n_tokens, self.token_dim = n_tokens, token_dim

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.view(len(flat), self.n_tokens, self.token_dim)

    def drop(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return tokens * keep[:, None, None].to(tokens.dtype)
