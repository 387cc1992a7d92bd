"""The registered networks: shapes, structure, placement, temporal mixing and bad input."""

import pytest
import torch

import rsanet
from rsanet.layers import RSA, LocalSelfAttention, TemporalShift
from rsanet.models import (
    RSA_R50_POSITIONS,
    ResNetTSN,
    UnknownModelError,
    create_model,
    list_models,
)

REQUIRED = {
    "tsn_r50",
    "tsm_r50",
    "rsanet_r50",
    "sa_r50",
    "conv3d_r50",
    "rsanet_r18",
    "rsanet_tiny",
    "tsn_tiny",
    "tsm_tiny",
    "sa_tiny",
    "conv3d_tiny",
}


def test_required_models_are_registered_and_exposed_at_top_level():
    assert REQUIRED <= set(list_models())
    assert rsanet.list_models() == list_models()
    assert list_models("*_tiny") == [
        "conv3d_tiny",
        "mvit_tiny",
        "rsanet_tiny",
        "sa_tiny",
        "timesformer_tiny",
        "tsm_tiny",
        "tsn_tiny",
        "uniformer_tiny",
        "vivit_tiny",
    ]


#: the TSN ResNets (the video transformers are tested in test_transformers.py and
#: test_uniformer.py)
TRANSFORMERS = ("timesformer_", "vivit_", "mvit_", "uniformer_")
RESNETS = [n for n in list_models() if not n.startswith(TRANSFORMERS)]


@pytest.mark.parametrize("name", RESNETS)
def test_forward_and_backward_shapes(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, num_frames=2)
    model.train()
    x = torch.randn(2, 3, 2, 32, 32, requires_grad=True)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, 2, 1, 1)
    logits = model.forward_head(features)
    assert logits.shape == (2, 5)
    logits.square().sum().backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize(
    "name,params",
    [
        ("tsn_r18", 11_689_512),
        ("tsn_r34", 21_797_672),
        ("tsn_r50", 25_557_032),
        ("tsn_r101", 44_549_160),
    ],
)
def test_tsn_has_exactly_the_2d_resnet_parameter_count(name, params):
    # torchvision's ResNets with a 1000-way classifier: inflation to 1 x k x k adds nothing
    model = create_model(name, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == params


def test_rsanet_r50_is_the_papers_configuration():
    model = create_model("rsanet_r50")
    assert model.placement()["rsa"] == [list(p) for p in RSA_R50_POSITIONS]
    assert model.placement()["rsa"] == [[2], [1, 3], [1, 3, 5], [1]]
    layers = {name: b.conv2 for name, b in model.named_blocks() if isinstance(b.conv2, RSA)}
    assert list(layers) == [
        "layer1.2",
        "layer2.1",
        "layer2.3",
        "layer3.1",
        "layer3.3",
        "layer3.5",
        "layer4.1",
    ]
    for name, layer in layers.items():
        planes = {"1": 64, "2": 128, "3": 256, "4": 512}[name[5]]
        assert (layer.in_channels, layer.out_channels, layer.num_heads) == (planes, planes, 8)
        assert layer.key_channels == layer.value_channels == layer.latent_channels == planes // 8
        assert layer.kernel_size == (5, 7, 7) and layer.stride == 1
        assert (layer.kernel, layer.context) == ("basic+relational", "basic+relational")
        assert layer.groups == planes // 8
    assert model.num_classes == 174 and model.num_frames == 8
    assert model.head_drop.p == 0.3
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 22.0


def test_baselines_use_the_rsa_positions_and_neighbourhood():
    sa = create_model("sa_r50")
    assert sa.placement()["self_attention"] == [[2], [1, 3], [1, 3, 5], [1]]
    for b in sa.blocks():
        if isinstance(b.conv2, LocalSelfAttention):
            assert b.conv2.kernel_size == (5, 7, 7) and b.conv2.num_heads == 8
    conv3d = create_model("conv3d_r50")
    assert conv3d.placement()["conv3d"] == [[2], [1, 3], [1, 3, 5], [1]]
    assert conv3d.layer3[1].conv2.weight.shape == (256, 256, 3, 3, 3)
    assert conv3d.layer3[0].conv2.weight.shape == (256, 256, 1, 3, 3)
    for name in ("tsn_tiny", "tsm_tiny", "sa_tiny", "conv3d_tiny", "rsanet_tiny"):
        placement = create_model(name).placement()
        other = [t for t in placement if t != "conv2d"]
        if name == "tsn_tiny":
            assert other == []
        else:
            assert len(other) == 1 and placement[other[0]] == [[2], [1, 3], [1, 3, 5], [1]]


def test_tsm_r50_shifts_every_residual_branch():
    model = create_model("tsm_r50")
    assert all(isinstance(b.shift, TemporalShift) and b.shift.fold_div == 8 for b in model.blocks())
    assert set(model.placement()) == {"conv2d"}  # all weights are ResNet-50's
    assert all(b.shift is None for b in create_model("tsn_r50").blocks())


def test_rsanet_tiny_is_small_and_keeps_the_structure():
    model = create_model("rsanet_tiny")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert model.layers == (3, 4, 6, 3) and model.block == "bottleneck"
    assert sum(isinstance(b.conv2, RSA) for b in model.blocks()) == 7


@pytest.mark.parametrize(
    "name,mixes_time",
    [
        ("tsn_tiny", False),
        ("tsm_tiny", True),
        ("rsanet_tiny", True),
        ("sa_tiny", True),
        ("conv3d_tiny", True),
        ("tsn_r18", False),
        ("tsm_r18", True),
        ("rsanet_r18", True),
    ],
)
def test_only_the_transforms_mix_frames(name, mixes_time):
    torch.manual_seed(0)
    model = create_model(name, zero_init_residual=False).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    y = x.clone()
    y[:, :, 2] = torch.randn(1, 3, 32, 32)  # change frame 2 only
    with torch.no_grad():
        fx, fy = model.forward_features(x), model.forward_features(y)
    changed = (fx - fy).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
    assert changed[2]
    assert bool(changed[[0, 1, 3]].any()) == mixes_time


def test_head_averages_per_frame_logits():
    torch.manual_seed(0)
    model = create_model("tsn_tiny", num_classes=7).eval()
    features = torch.randn(2, model.num_features, 3, 2, 2)
    per_frame = model.fc(features.mean(dim=(3, 4)).transpose(1, 2))  # (N, T, classes)
    torch.testing.assert_close(model.forward_head(features), per_frame.mean(dim=1))
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(model.fc(pooled), per_frame.mean(dim=1))


def test_reset_classifier():
    model = create_model("rsanet_tiny", num_classes=5)
    model.reset_classifier(11)
    assert model.get_classifier().out_features == 11 and model.num_classes == 11
    assert model.rsanet_config["num_classes"] == 11
    assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, 11)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, model.num_features)


def test_create_model_records_its_configuration():
    model = create_model("rsanet_tiny", num_classes=3, num_frames=4, drop_path_rate=0.1)
    assert isinstance(model, ResNetTSN)
    assert model.rsanet_config == {
        "name": "rsanet_tiny",
        "num_classes": 3,
        "num_frames": 4,
        "drop_path_rate": 0.1,
    }
    assert create_model("rsanet_tiny").rsanet_config == {
        "name": "rsanet_tiny",
        "num_classes": 174,
        "num_frames": 8,
    }


def test_overrides_reach_the_network():
    model = create_model(
        "tsn_tiny",
        placement={"rsa": [[0], [], [], []]},
        transform_options={"rsa": {"num_heads": 2, "kernel_size": (3, 3, 3)}},
    )
    layer = model.layer1[0].conv2
    assert isinstance(layer, RSA) and layer.num_heads == 2 and layer.kernel_size == (3, 3, 3)
    assert sum(isinstance(b.conv2, RSA) for b in model.blocks()) == 1


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match=r"unknown model 'rsanet_r5'.*rsanet_r50") as info:
        create_model("rsanet_r5")
    assert isinstance(info.value, ValueError)
    for name in list_models():
        assert name in str(info.value)


@pytest.mark.parametrize(
    "shape",
    [(2, 8, 3, 32, 32), (2, 3, 32, 32), (3, 32, 32, 8)],
)
def test_wrong_clip_shape_says_what_was_expected(shape):
    model = create_model("rsanet_tiny")
    expected = r"rsanet_tiny expects clips \(N, 3, T, H, W\) with 3 colour channels .*got " + str(
        shape
    ).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=expected):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (
            dict(placement={"rsa": [[3], [], [], []]}),
            r"placement\['rsa'\]: stage 1 has blocks 0..2, got index 3",
        ),
        (dict(placement={"rsa": [[1], [1]]}), r"one list of block indices per stage \(4 stages"),
        (dict(placement={"attention": "all"}), r"unknown transform 'attention'; known: \['conv2d'"),
        (
            dict(placement={"rsa": [[1], [], [], []], "conv3d": [[1], [], [], []]}),
            r"both 'rsa' and 'conv3d' at block 1 of stage 1",
        ),
        (dict(placement={"rsa": "some"}), r"must be 'all' or one list of block indices"),
        (
            dict(transform_options={"rsa": {"heads": 2}}, placement={"rsa": "all"}),
            r"transform 'rsa'",
        ),
        (
            dict(temporal_shift=[[0]]),
            r"temporal_shift must give one list of block indices per stage",
        ),
        (dict(drop_path_rate=1.0), r"drop_path_rate must be in \[0, 1\)"),
        (dict(num_classes=-1), r"num_classes must be an integer >= 0"),
        (dict(num_frames=0), r"num_frames must be a positive integer"),
        (dict(block="wide"), r"block must be one of \['basic', 'bottleneck'\]"),
    ],
)
def test_bad_configuration_is_named(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        create_model("tsn_tiny", **kwargs)
