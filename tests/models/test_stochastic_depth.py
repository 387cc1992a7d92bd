"""Stochastic depth: per-sample drop of residual branches, linear rule, training only."""

import pytest
import torch

from rsanet.models import DropPath, create_model, stochastic_depth_rates


def test_linear_rule_over_all_blocks():
    rates = stochastic_depth_rates(16, 0.2)
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert rates == pytest.approx([0.2 * i / 15 for i in range(16)])
    assert stochastic_depth_rates(1, 0.3) == [0.0]
    model = create_model("rsanet_r50")  # the paper: 0.2 over the 16 blocks
    probs = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks()]
    assert probs == pytest.approx(rates)
    assert isinstance(model.layer1[0].drop_path, torch.nn.Identity)
    assert all(
        isinstance(b.drop_path, torch.nn.Identity) for b in create_model("rsanet_tiny").blocks()
    )


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    layer = DropPath(0.3)
    x = torch.ones(4000, 2, 3, 2, 2)
    layer.train()
    y = layer(x)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.amin(dim=1), per_sample.amax(dim=1))  # all or nothing
    kept = per_sample[:, 0][per_sample[:, 0] != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.7))  # rescaled by 1/keep
    dropped = (per_sample[:, 0] == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.03
    assert abs(y.mean().item() - 1.0) < 0.05  # expectation kept
    layer.eval()
    assert torch.equal(layer(x), x)
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\)"):
        DropPath(1.0)


def test_model_is_stochastic_in_training_and_deterministic_in_eval():
    torch.manual_seed(0)
    model = create_model("tsn_tiny", drop_path_rate=0.5, zero_init_residual=False)
    x = torch.randn(4, 3, 2, 32, 32)

    def run(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return model(x)

    model.train()
    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))
    model.eval()
    torch.testing.assert_close(run(1), run(2), rtol=0, atol=0)
    # without stochastic depth training is deterministic too (BatchNorm uses batch statistics)
    plain = create_model("tsn_tiny", drop_path_rate=0.0, zero_init_residual=False).train()
    torch.manual_seed(1)
    a = plain(x)
    torch.manual_seed(2)
    torch.testing.assert_close(plain(x), a, rtol=0, atol=0)


def test_dropped_branch_leaves_the_shortcut():
    torch.manual_seed(0)
    model = create_model("tsn_tiny", zero_init_residual=False)
    block = model.layer1[1]  # identity shortcut
    block.drop_path = DropPath(0.999999)
    block.train()
    x = torch.randn(3, 64, 2, 8, 8)
    torch.manual_seed(0)
    torch.testing.assert_close(block(x), torch.relu(x))
