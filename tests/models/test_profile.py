"""Parameters and FLOPs: the paper's figures, the counting convention, the CLI."""

import argparse
import json
import math

import pytest
import torch

from rsanet.cli import profile as profile_cli
from rsanet.layers import RSA
from rsanet.models import create_model, profile_model
from rsanet.models import profile as profile_module


@pytest.fixture(scope="module")
def rsanet8():
    return profile_model("rsanet_r50", frames=8, size=224, num_classes=174)


def test_rsanet_r50_matches_the_paper(rsanet8):
    # Table 4 (b, c): 22.0M parameters, 35.9 GFLOPs at 8 x 224 x 224, SS-V1 (174 classes)
    assert rsanet8.params == 22_034_302
    assert round(rsanet8.params / 1e6, 1) == 22.0
    assert rsanet8.gflops == pytest.approx(35.9, abs=0.05)
    # Table 5: 72 GFLOPs at 16 frames; every layer is per frame, so exactly twice
    sixteen = profile_model("rsanet_r50", frames=16)
    assert sixteen.macs == 2 * rsanet8.macs
    assert round(sixteen.gflops) == 72


@pytest.mark.parametrize(
    "table,options,positions,gflops,mparams",
    [
        ("4a", {"kernel": "basic", "context": "basic"}, [[], [], [], [1]], 32.3, None),
        ("4a", {}, [[], [], [], [1]], 33.2, None),
        ("4b", {"latent_channels": 16}, None, 34.7, 20.9),
        ("4c", {"kernel_size": (3, 3, 3)}, None, 28.5, 20.3),
        ("4c", {"kernel_size": (5, 9, 9)}, None, 41.3, 23.3),
        ("4d", {"groups": 1}, None, 35.9, 20.2),
    ],
)
def test_ablation_figures_of_table_4(table, options, positions, gflops, mparams):
    """Variants of RSANet-R50 (one RSA layer in stage 4 for 4a): FLOPs and params."""
    rsa = {"num_heads": 8, "kernel_size": (5, 7, 7), **options}
    overrides = {"transform_options": {"rsa": rsa}}
    if positions is not None:
        overrides["placement"] = {"rsa": positions}
    result = profile_model("rsanet_r50", **overrides)
    assert round(result.gflops, 1) == gflops
    if mparams is not None:
        assert round(result.params / 1e6, 1) == mparams


def test_tsn_and_tsm_r50():
    tsn = profile_model("tsn_r50")
    tsm = profile_model("tsm_r50")
    assert tsn.gflops == pytest.approx(32.7, abs=0.05)  # 8 x ResNet-50's 4.09 GMACs
    assert tsm.macs == tsn.macs  # the shift costs nothing
    assert tsn.params == tsm.params == 23_864_558


def test_rsa_layers_are_counted_with_their_official_macs(rsanet8):
    model = create_model("rsanet_r50")
    sizes = {"layer1": 56, "layer2": 28, "layer3": 14, "layer4": 7}
    expected = {
        name: b.conv2.official_macs(8, sizes[name.split(".")[0]], sizes[name.split(".")[0]])
        for name, b in ((f"{n}.conv2", b) for n, b in model.named_blocks())
        if isinstance(b.conv2, RSA)
    }
    assert rsanet8.unit_macs == expected
    assert sum(s.macs for s in rsanet8.stages) == rsanet8.macs
    assert sum(s.params for s in rsanet8.stages) == rsanet8.params
    assert [s.name for s in rsanet8.stages] == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "head",
    ]
    assert rsanet8.stages[4].output_shape == (1, 2048, 8, 7, 7)


def test_convolution_macs_are_what_fvcore_counts():
    """TSN's count equals the convolutions' and classifier's multiply-adds, by hand."""
    model = create_model("tsn_tiny", num_classes=10).eval()
    macs = []

    def hook(module, args, out):
        if isinstance(module, torch.nn.Conv3d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            macs.append(out.numel() * per_output)
        elif isinstance(module, torch.nn.Linear):
            macs.append(out.numel() * module.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 3, 4, 64, 64))
    for h in handles:
        h.remove()
    assert profile_model(model, frames=4, size=64).macs == sum(macs)


def test_batchnorm_is_only_counted_on_request():
    model = create_model("tsn_tiny", num_classes=10)
    elements = []
    handles = [
        m.register_forward_hook(lambda m, a, o: elements.append(o.numel()))
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm3d)
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 2, 32, 32))
    for h in handles:
        h.remove()
    plain = profile_model(model, frames=2, size=32)
    with_norm = profile_model(model, frames=2, size=32, count_norm=True)
    assert with_norm.macs - plain.macs == 2 * sum(elements)  # fvcore: 2 per element


def test_shape_only_stand_in_counts_like_running_the_layers(monkeypatch):
    two_layers = {"placement": {"rsa": [[2], [], [], [1]]}}
    fast = profile_model("rsanet_tiny", frames=2, size=32, **two_layers)
    monkeypatch.setattr(profile_module, "_unit_shapes", lambda *args: None)
    slow = profile_model("rsanet_tiny", frames=2, size=32, **two_layers)
    assert len(fast.unit_macs) == 2
    assert slow.macs == fast.macs and slow.unit_macs == fast.unit_macs
    assert [s.macs for s in slow.stages] == [s.macs for s in fast.stages]


def test_profile_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = create_model("rsanet_tiny", num_classes=3).train()
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        before = model.eval()(x)
    model.train()
    profile_model(model, frames=2, size=32)
    assert model.training
    assert all("forward" not in m.__dict__ for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), before, rtol=0, atol=0)


def test_every_tiny_model_profiles():
    # (sa_tiny is left out: tracing local self-attention takes ~20 s; docs/models.md has it)
    figures = {
        n: profile_model(n, frames=8, size=64)
        for n in ("tsn_tiny", "tsm_tiny", "rsanet_tiny", "conv3d_tiny")
    }
    assert figures["tsm_tiny"].macs == figures["tsn_tiny"].macs
    for name in ("rsanet_tiny", "conv3d_tiny"):
        assert figures[name].macs > figures["tsn_tiny"].macs
    assert figures["rsanet_tiny"].params < 2_000_000


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="rsanet")
    profile_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_json(capsys):
    assert (
        run_cli(
            [
                "profile",
                "rsanet_tiny",
                "--frames",
                "4",
                "--size",
                "64",
                "--num-classes",
                "10",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    expected = profile_model("rsanet_tiny", frames=4, size=64, num_classes=10)
    assert result["model"] == "rsanet_tiny"
    assert isinstance(result["params"], int) and result["params"] == expected.params
    assert isinstance(result["gflops"], float) and result["gflops"] == pytest.approx(
        expected.gflops
    )
    assert [s["name"] for s in result["stages"]][-1] == "head"


def test_cli_table(capsys):
    assert run_cli(["profile", "tsn_tiny", "--frames", "2", "--size", "32"]) == 0
    out = capsys.readouterr().out
    for word in ("stem", "layer1", "layer4", "head", "total", "GFLOPs", "2x1x1"):
        assert word in out
    with pytest.raises(ValueError, match=r"unknown model 'rsanet_r51'"):
        run_cli(["profile", "rsanet_r51"])
