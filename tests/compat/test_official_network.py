"""Our rsanet_r50, loaded from a checkpoint in the authors' format, computes the logits of
the authors' own network (their TSN wrapper, ResNet and RSA code) on the same clip.

``tests/golden/rsanet_r50_official.pt`` holds the key names and shapes of their state dict,
the salt of the rule that fills every tensor, the seed of the clip and the logits their
network produced (see tests/golden/README.md). The checkpoint is rebuilt here from that
rule, so the comparison checks our network against theirs, not against itself.
"""

from __future__ import annotations

import copy
import math
import zlib
from pathlib import Path

import pytest
import torch

from rsanet.compat import load_official_checkpoint, official_clip_to_ours

GOLDEN = Path(__file__).parents[1] / "golden" / "rsanet_r50_official.pt"


def fill(salt: str, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The tensor the golden case's rule gives ``key`` (float64, or the int64 counter)."""
    g = torch.Generator().manual_seed(zlib.crc32((salt + key).encode()))
    last = key.rsplit(".", 1)[-1]
    draw = {"generator": g, "dtype": torch.float64}
    if last == "num_batches_tracked":
        return torch.tensor(0)
    if last == "running_var":
        return 0.5 + torch.rand(shape, **draw)
    if last == "running_mean":
        return 0.1 * torch.randn(shape, **draw)
    if last == "I":
        eye = torch.eye(shape[-1], dtype=torch.float64).expand(shape)
        return eye + 0.1 * torch.randn(shape, **draw)
    if last == "P1":
        return 0.1 * torch.randn(shape, **draw)
    if len(shape) == 1:
        return (1.0 if last == "weight" else 0.0) + 0.1 * torch.randn(shape, **draw)
    return torch.randn(shape, **draw) * math.sqrt(1 / math.prod(shape[1:]))


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def clip(golden: dict) -> torch.Tensor:
    """The clip (N, 3, T, H, W), float64, regenerated from its seed."""
    g = torch.Generator().manual_seed(golden["input_seed"])
    x = torch.randn(golden["input_shape"], generator=g, dtype=torch.float64)
    total, absolute = golden["input_checksum"]
    assert x.sum().item() == pytest.approx(total, rel=1e-10)
    assert x.abs().sum().item() == pytest.approx(absolute, rel=1e-10)
    return x


@pytest.fixture(scope="module")
def checkpoint(golden: dict) -> dict:
    """A checkpoint as the authors' training script writes it, float32 tensors."""
    state = {}
    for key, shape in golden["keys"]:
        tensor = fill(golden["salt"], key, tuple(shape))
        state[f"module.{key}"] = tensor.float() if tensor.is_floating_point() else tensor
    return {"epoch": 50, "arch": "ResNet", "state_dict": state, "best_prec1": 51.9}


@pytest.fixture(scope="module")
def model(golden: dict, checkpoint: dict) -> torch.nn.Module:
    return load_official_checkpoint(
        checkpoint, num_classes=golden["num_classes"], num_frames=golden["num_frames"]
    )


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours.double() - theirs).norm() / theirs.norm()).item()


def test_the_golden_case_is_rsanet_r50(golden: dict) -> None:
    transform = golden["transform"]
    assert transform["transform"] == "RSA"
    assert transform["position"] == [[2], [1, 3], [1, 3, 5], [1]]
    assert list(transform["kernel_size"]) == [5, 7, 7] and transform["nh"] == 8
    assert (transform["kernel_type"], transform["feat_type"]) == ("VplusR", "VplusR")
    assert (golden["num_classes"], golden["num_frames"]) == (174, 8)


def test_float64_logits_equal_the_authors_network(
    golden: dict, model: torch.nn.Module, clip: torch.Tensor
) -> None:
    expected = golden["logits_from_f32_weights"]
    with torch.no_grad():
        logits = copy.deepcopy(model).double()(clip)
    assert logits.shape == expected.shape == (2, 174)
    assert relative_error(logits, expected) < 1e-9


def test_float32_logits_are_close(golden: dict, model: torch.nn.Module, clip: torch.Tensor) -> None:
    with torch.no_grad():
        logits = model(clip.float())
    assert relative_error(logits, golden["logits_from_f32_weights"]) < 1e-5


def test_their_clip_layout_converts_to_ours(golden: dict, clip: torch.Tensor) -> None:
    """Their wrapper takes (N, T*3, H, W), frame-major."""
    n, c, t, h, w = clip.shape
    theirs = clip.permute(0, 2, 1, 3, 4).reshape(n, t * c, h, w)
    assert torch.equal(official_clip_to_ours(theirs, golden["num_frames"]), clip)
