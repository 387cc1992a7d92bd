"""Independent descriptions of the ResNet checkpoints the loaders read, for the tests.

``resnet_layout`` lists torchvision's ResNet keys and shapes (2-D kernels) or the authors'
(3-D kernels 1 x k x k under ``base_model.``); ``resnet2d_features`` is a plain functional
2-D ResNet on such a state dict, to check the inflated TSN network frame by frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EXPANSION = {"basic": 1, "bottleneck": 4}


def resnet_layout(
    block: str,
    layers: tuple[int, ...],
    *,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    stem: int = 64,
    num_classes: int | None = 1000,
    kernel_dims: int = 2,
) -> dict[str, tuple[int, ...]]:
    """key -> shape of a torchvision ResNet state dict (``kernel_dims=3``: 1 x k x k)."""

    def conv(o: int, i: int, k: int) -> tuple[int, ...]:
        return (o, i, k, k) if kernel_dims == 2 else (o, i, 1, k, k)

    def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
        return {
            f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")
        } | {f"{prefix}.num_batches_tracked": ()}

    shapes = {"conv1.weight": conv(stem, 3, 7), **bn("bn1", stem)}
    expansion = EXPANSION[block]
    in_c = stem
    for s, (blocks, planes) in enumerate(zip(layers, widths, strict=True)):
        for i in range(blocks):
            p = f"layer{s + 1}.{i}"
            if block == "basic":
                shapes[f"{p}.conv1.weight"] = conv(planes, in_c, 3)
                shapes |= bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = conv(planes, planes, 3)
                shapes |= bn(f"{p}.bn2", planes)
            else:
                shapes[f"{p}.conv1.weight"] = conv(planes, in_c, 1)
                shapes |= bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = conv(planes, planes, 3)
                shapes |= bn(f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = conv(planes * 4, planes, 1)
                shapes |= bn(f"{p}.bn3", planes * 4)
            stride = 2 if (s > 0 and i == 0) else 1
            if stride != 1 or in_c != planes * expansion:
                shapes[f"{p}.downsample.0.weight"] = conv(planes * expansion, in_c, 1)
                shapes |= bn(f"{p}.downsample.1", planes * expansion)
            in_c = planes * expansion
    if num_classes:
        shapes["fc.weight"] = (num_classes, in_c)
        shapes["fc.bias"] = (num_classes,)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of those shapes; BatchNorm variances positive, counters int64."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.int64)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            out[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return out


def _bn(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def resnet2d_features(
    sd: dict, x: torch.Tensor, block: str, layers: tuple[int, ...]
) -> torch.Tensor:
    """A 2-D ResNet's feature map for images (B, 3, H, W), from a torchvision state dict."""
    x = F.relu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    for s, blocks in enumerate(layers):
        for i in range(blocks):
            p = f"layer{s + 1}.{i}"
            stride = 2 if (s > 0 and i == 0) else 1
            if block == "basic":
                out = F.relu(
                    _bn(
                        sd,
                        f"{p}.bn1",
                        F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1),
                    )
                )
                out = _bn(sd, f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1))
            else:
                out = F.relu(_bn(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"])))
                out = F.relu(
                    _bn(
                        sd,
                        f"{p}.bn2",
                        F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1),
                    )
                )
                out = _bn(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]))
            shortcut = x
            if f"{p}.downsample.0.weight" in sd:
                shortcut = _bn(
                    sd,
                    f"{p}.downsample.1",
                    F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride),
                )
            x = F.relu(out + shortcut)
    return x
