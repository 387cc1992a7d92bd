"""Multiple-instance learning: the window each bag is trained on, and the gradient that
reaches only it."""

from __future__ import annotations

import pytest
import torch

from rsanet.engine.bags import select_instances


def test_an_event_bag_keeps_its_most_convinced_window_and_a_normal_bag_its_least():
    # 2 bags of 3 windows, classes (normal, fight, fall)
    logits = torch.tensor(
        [
            [[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.5, 0.0]],  # a fight bag: window 1
            [[3.0, 0.0, 0.0], [0.5, 0.0, 1.0], [2.0, 1.0, 0.0]],  # a normal bag: window 1
        ],
        requires_grad=True,
    )
    labels = torch.tensor([1, 0])
    picked = select_instances(logits, labels)
    assert torch.equal(picked, logits[:, 1].detach())
    torch.nn.functional.cross_entropy(picked, labels).backward()
    grad = logits.grad.abs().sum(-1)
    assert torch.equal(grad > 0, torch.tensor([[False, True, False], [False, True, False]]))


def test_the_pick_follows_the_probability_not_the_raw_logit():
    # window 0 has the larger fight logit, but window 1 the larger fight probability
    logits = torch.tensor([[[9.0, 5.0, 0.0], [0.0, 4.0, 0.0]]])
    assert torch.equal(select_instances(logits, torch.tensor([1])), logits[0, 1:2])


def test_one_window_bags_are_the_windows_themselves():
    logits = torch.randn(5, 1, 4)
    assert torch.equal(select_instances(logits, torch.tensor([0, 1, 2, 3, 0])), logits[:, 0])


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"expected logits \(N, K, C\) and labels \(N,\)"):
        select_instances(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
