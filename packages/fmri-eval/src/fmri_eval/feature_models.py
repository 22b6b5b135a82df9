"""The feature networks of the NSD literature's table, read from local weights (needs the `features` extra).

| column              | network (torchvision / transformers class)  | features          | input |
| ------------------- | ------------------------------------------- | ----------------- | ----- |
| alexnet2, alexnet5  | AlexNet                                     | features.4, .11   | 224   |
| inception           | Inception3 (Inception-v3)                   | avgpool           | 299   |
| clip                | CLIPVisionModelWithProjection               | image_embeds      | its config |
| effnet              | EfficientNet (B1)                           | avgpool           | 240   |
| swav                | ResNet (ResNet-50, SwAV self-supervised)    | avgpool           | 224   |

Weights are never downloaded. `load_feature_networks(folder)` looks in `folder` for `alexnet`,
`inception_v3`, `efficientnet_b1` and `swav_resnet50` as `.safetensors` or `.pth` state dicts, and for a
`clip/` folder written by `save_pretrained`; then in torch's hub cache for the files torchvision (and the
SwAV hub entry) would have downloaded, and for `clip_model` (default openai/clip-vit-large-patch14) in the
Hugging Face cache. `.pth` files are read with `torch.load(weights_only=True)`: no pickled code runs.
A network not found is left out and the table notes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor

from fmri_eval.errors import EvaluationError
from fmri_eval.literature_table import EVAL_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CLIP = "openai/clip-vit-large-patch14"


@dataclass
class FeatureNetwork:
    """A module mapping normalised images [n, 3, size, size] to {column: features}, and its input format."""

    module: nn.Module
    input_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class TorchvisionSpec:
    build: Callable[[], nn.Module]
    nodes: Mapping[str, str]
    input_size: int
    hub_file: str
    optional_keys: tuple[str, ...] = ()  # prefixes the weights may lack (heads the table never uses)


TORCHVISION_NETWORKS = {
    "alexnet": TorchvisionSpec(
        models.alexnet,
        {"features.4": "alexnet2", "features.11": "alexnet5"},
        224,
        Path(models.AlexNet_Weights.IMAGENET1K_V1.url).name,
    ),
    "inception_v3": TorchvisionSpec(
        lambda: models.inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True),
        {"avgpool": "inception"},
        299,
        Path(models.Inception_V3_Weights.IMAGENET1K_V1.url).name,
    ),
    "efficientnet_b1": TorchvisionSpec(
        models.efficientnet_b1,
        {"avgpool": "effnet"},
        240,
        Path(models.EfficientNet_B1_Weights.IMAGENET1K_V1.url).name,
    ),
    "swav_resnet50": TorchvisionSpec(
        models.resnet50, {"avgpool": "swav"}, 224, "swav_800ep_pretrain.pth.tar", optional_keys=("fc.",)
    ),
}


def torchvision_network(model: nn.Module, nodes: Mapping[str, str], input_size: int) -> FeatureNetwork:
    """Any torchvision classifier read out at `nodes` ({graph node: column}), e.g. a tiny one in tests."""
    return FeatureNetwork(create_feature_extractor(model.eval(), return_nodes=dict(nodes)), input_size)


class _ClipImageEmbeds(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"clip": self.model(pixel_values=pixels).image_embeds}


def clip_network(name_or_path: str | Path) -> FeatureNetwork:
    """CLIP's projected image embedding, from a local folder or an id already in the Hugging Face cache."""
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(
        str(name_or_path), local_files_only=True, dtype=torch.float32
    ).eval()
    return FeatureNetwork(
        _ClipImageEmbeds(model),
        model.config.image_size,
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a .pth/.pth.tar without unpickling code."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_torchvision_network(name: str, path: Path) -> FeatureNetwork:
    """The standard architecture `name` with the weights at `path`; a file of another network is refused."""
    spec = TORCHVISION_NETWORKS[name]
    model = spec.build()
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(spec.optional_keys)]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or wrong:
        example = (missing or wrong)[0]
        raise EvaluationError(
            f"{path} does not hold {name} weights ({len(missing)} missing, {len(wrong)} of another shape, "
            f"e.g. {example}); pass torchvision's {name} state dict"
        )
    model.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)
    return torchvision_network(model, spec.nodes, spec.input_size)


def _find_weights(name: str, folder: Path | None) -> Path | None:
    candidates = []
    if folder is not None:
        candidates += [folder / f"{name}.safetensors", folder / f"{name}.pth"]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_NETWORKS[name].hub_file)
    return next((path for path in candidates if path.is_file()), None)


def load_feature_networks(
    folder: str | Path | None = None, *, clip_model: str | Path | None = None
) -> tuple[dict[str, FeatureNetwork], list[str]]:
    """Every network whose weights are here, and one note per network that is not.

    A `clip_model` asked for explicitly must load; the default one is used only if it is already cached.
    """
    folder = None if folder is None else Path(folder).expanduser()
    if folder is not None and not folder.is_dir():
        raise EvaluationError(f"feature weights folder {folder} does not exist; pass a folder of weights")
    networks, notes = {}, []
    for name in TORCHVISION_NETWORKS:
        path = _find_weights(name, folder)
        if path is None:
            where = f"in {folder} " if folder is not None else ""
            notes.append(f"{name}: no {name}.safetensors/.pth {where}nor in torch's hub cache")
        else:
            networks[name] = load_torchvision_network(name, path)
    local_clip = folder / "clip" if folder is not None and (folder / "clip").is_dir() else None
    clip_source = clip_model or local_clip or DEFAULT_CLIP
    try:
        networks["clip"] = clip_network(clip_source)
    except (OSError, ValueError) as error:
        if clip_model is not None:
            raise EvaluationError(
                f"cannot load the CLIP model {clip_model} ({' '.join(str(error).split())[:160]}); pass a "
                "folder written by CLIPVisionModelWithProjection.save_pretrained or a cached id"
            ) from error
        notes.append(f"clip: {clip_source} is neither a local CLIP folder nor in the Hugging Face cache")
    return networks, notes


class FeatureExtractor:
    """images [n, H, W] or [n, H, W, 3] in [0, 1] -> {column: features [n, d]}, as `literature_table` wants
    them.

    Each image goes to 425x425 first (the literature's size), then to the network's input size, as RGB
    (grayscale repeated over the three channels), normalised with the network's mean and std.
    """

    def __init__(
        self, networks: Mapping[str, FeatureNetwork], *, device: str = "cpu", batch_size: int = 32
    ) -> None:
        self.networks = dict(networks)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        pixels = torch.from_numpy(np.asarray(images, dtype=np.float32))
        if pixels.ndim == 3:
            pixels = pixels[:, None]  # one channel, repeated to three once resized
        elif pixels.ndim == 4 and pixels.shape[-1] == 3:
            pixels = pixels.permute(0, 3, 1, 2)
        else:
            raise EvaluationError(
                "feature extraction takes grayscale images [n, H, W] or RGB images [n, H, W, 3], "
                f"got {tuple(pixels.shape)}"
            )
        outputs: dict[str, list[np.ndarray]] = {}
        for network in self.networks.values():
            module = network.module.to(self.device)
            for chunk in pixels.split(self.batch_size):
                for column, value in module(self._prepare(chunk, network)).items():
                    outputs.setdefault(column, []).append(value.flatten(1).float().cpu().numpy())
        return {column: np.concatenate(parts) for column, parts in outputs.items()}

    def _prepare(self, images: torch.Tensor, network: FeatureNetwork) -> torch.Tensor:
        x = images.to(self.device)
        for size in (EVAL_SIZE, network.input_size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp(0, 1)
        mean = torch.tensor(network.mean, device=self.device)[None, :, None, None]
        std = torch.tensor(network.std, device=self.device)[None, :, None, None]
        return (x.expand(-1, 3, -1, -1) - mean) / std
