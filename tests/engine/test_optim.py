"""Parameter groups, optimisers, the warm-up + cosine schedule, label smoothing, EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rsanet.engine.config import OptimConfig
from rsanet.engine.ema import ModelEMA
from rsanet.engine.optim import (
    build_loss,
    build_optimizer,
    build_scheduler,
    param_groups,
    warmup_cosine_factor,
)


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(3, 4, 3, bias=True),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.LayerNorm(4),
        nn.Linear(4, 2),
    )


def test_no_decay_on_norms_and_biases():
    net = small_net()
    decay, no_decay = param_groups(net, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert ids(decay) == {id(net[0].weight), id(net[6].weight)}
    assert ids(no_decay) == {
        id(net[0].bias),
        id(net[1].weight),
        id(net[1].bias),
        id(net[5].weight),
        id(net[5].bias),
        id(net[6].bias),
    }
    (single,) = param_groups(net, 0.1, no_decay_norm_bias=False)
    assert len(single["params"]) == len(list(net.parameters()))


def test_groups_of_a_real_model_cover_every_parameter_once():
    from rsanet.models import create_model

    model = create_model("rsanet_tiny", num_classes=5)
    groups = param_groups(model, 5e-4)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)) == len(list(model.parameters()))
    decayed = {id(p) for p in groups[0]["params"]}
    for name, param in model.named_parameters():
        if (
            name.endswith("bias")
            or ".bn" in name
            or name.startswith("bn1")
            or "downsample.1" in name
        ):
            assert id(param) not in decayed, name
        if name.endswith("conv1.weight") or name == "fc.weight":
            assert id(param) in decayed, name


@pytest.mark.parametrize("name", ["timesformer_tiny", "vivit_tiny", "mvit_tiny"])
def test_no_decay_on_the_tokens_and_position_embeddings_of_transformers(name):
    from rsanet.models import create_model

    model = create_model(name, num_classes=5)
    decay, no_decay = param_groups(model, 0.05)
    decayed = {id(p) for p in decay["params"]}
    named = dict(model.named_parameters())
    tokens = [n for n in named if "token" in n or "pos_embed" in n or "time_embed" in n]
    assert tokens and all(id(named[n]) not in decayed for n in tokens)
    assert id(named["head.weight"]) in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)


def test_sgd_nesterov_and_adamw():
    net = small_net()
    sgd = build_optimizer(
        net, OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    )
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.9
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.01, 0.0]
    adamw = build_optimizer(net, OptimConfig(name="adamw", lr=1e-3, betas=[0.8, 0.95]))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["betas"] == (0.8, 0.95)


def test_warmup_then_cosine_per_step():
    net = small_net()
    opt = build_optimizer(net, OptimConfig(lr=0.2, warmup_epochs=2, min_lr=0.02))
    sched = build_scheduler(
        opt, OptimConfig(lr=0.2, warmup_epochs=2, min_lr=0.02), epochs=10, steps_per_epoch=5
    )
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    warm = 10  # 2 epochs x 5 steps
    assert lrs[:warm] == pytest.approx([0.2 * (i + 1) / warm for i in range(warm)])
    assert lrs[warm] == pytest.approx(0.2)  # the peak right after the warm-up
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1 :], strict=False))
    middle = warm + 20
    assert lrs[middle] == pytest.approx(0.02 + 0.18 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[-1] > 0.02 and opt.param_groups[0]["lr"] == pytest.approx(0.02)
    assert all(g["lr"] == lrs_ for g, lrs_ in zip(opt.param_groups, [0.02, 0.02], strict=True))


def test_constant_schedule_and_no_warmup():
    assert warmup_cosine_factor(0, 100, 0, schedule="constant") == 1.0
    assert warmup_cosine_factor(99, 100, 0, schedule="constant") == 1.0
    assert warmup_cosine_factor(0, 100, 0) == 1.0
    assert warmup_cosine_factor(100, 100, 0, 0.1) == pytest.approx(0.1)


def test_scheduler_state_round_trip():
    net = small_net()
    config = OptimConfig(lr=0.1, warmup_epochs=1)
    opt = build_optimizer(net, config)
    sched = build_scheduler(opt, config, epochs=4, steps_per_epoch=3)
    for _ in range(5):
        opt.step()
        sched.step()
    opt2 = build_optimizer(net, config)
    sched2 = build_scheduler(opt2, config, epochs=4, steps_per_epoch=3)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(4):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


def test_label_smoothing_loss():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1])
    eps = 0.1
    loss = build_loss(OptimConfig(label_smoothing=eps))(logits, labels)
    logp = logits.log_softmax(-1)
    target = torch.full_like(logp, eps / 3)
    target[torch.arange(2), labels] += 1 - eps
    assert loss.item() == pytest.approx(float(-(target * logp).sum(-1).mean()), rel=1e-6)


def test_ema_follows_the_weights():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(net, decay=0.9)
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(3.0)
    ema.update(net)
    assert torch.allclose(ema.module[0].weight, before + 0.1)  # 0.9 * w + 0.1 * (w + 1)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))  # buffers copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    state = ema.state_dict()
    other = ModelEMA(net, decay=0.9)
    other.load_state_dict(state)
    assert all(
        torch.equal(a, b) for a, b in zip(other.state_dict().values(), state.values(), strict=True)
    )
