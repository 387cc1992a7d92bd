"""UniFormer for video: registry, shapes, what the local and global aggregators see, the
published parameters and FLOPs, inflation of the authors' 2-D ImageNet checkpoints,
checkpoints and ONNX export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsanet.models import (
    CheckpointMismatchError,
    GlobalBlock,
    LocalBlock,
    UniFormer,
    create_model,
    list_models,
    load_model,
    load_uniformer_checkpoint,
    profile_model,
    save_checkpoint,
)

TINY_DEPTHS = (1, 2, 3, 1)
TINY_WIDTHS = (32, 64, 128, 256)


def test_registered():
    assert list_models("uniformer_*") == ["uniformer_b", "uniformer_s", "uniformer_tiny"]
    model = create_model("uniformer_tiny")
    assert isinstance(model, UniFormer)
    assert (model.num_classes, model.num_frames) == (174, 8)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    with torch.device("meta"):
        s = create_model("uniformer_s")
    assert (s.num_frames, s.depths, s.widths) == (16, (3, 4, 8, 3), (64, 128, 320, 512))


def test_stages_of_uniformer_s():
    """16 x 224 x 224: the 3x4x4 stem at stride 2x4x4 gives 8 x 56 x 56 tokens, then 28, 14
    and 7; local blocks in stages 1-2, global ones (heads of 64 channels) in 3-4."""
    with torch.device("meta"):
        model = create_model("uniformer_s", num_classes=400)
        shapes = {}
        for s in range(1, 5):  # the output of each stage's last block
            getattr(model, f"blocks{s}")[-1].register_forward_hook(
                lambda m, a, out, s=s: shapes.__setitem__(s, tuple(out.shape))
            )
        logits = model(torch.zeros(1, 3, 16, 224, 224))
    assert logits.shape == (1, 400)
    assert shapes == {
        1: (1, 64, 8, 56, 56),
        2: (1, 128, 8, 28, 28),
        3: (1, 320, 8, 14, 14),
        4: (1, 512, 8, 7, 7),
    }
    assert all(isinstance(b, LocalBlock) for b in [*model.blocks1, *model.blocks2])
    assert all(isinstance(b, GlobalBlock) for b in [*model.blocks3, *model.blocks4])
    assert (model.blocks3[0].attn.num_heads, model.blocks4[0].attn.num_heads) == (5, 8)
    assert model.patch_embed1.proj.kernel_size == (3, 4, 4)
    assert model.patch_embed1.proj.stride == (2, 4, 4)
    assert model.patch_embed2.proj.stride == (1, 2, 2)
    rates = [b.drop_path.drop_prob for b in model.blocks4]
    assert rates[-1] == pytest.approx(0.1)  # drop path rising to 0.1 over the 18 blocks


@pytest.mark.parametrize("frames,size", [(4, 32), (8, 48)])
def test_forward_and_backward_reach_every_parameter(frames, size):
    torch.manual_seed(0)
    model = create_model("uniformer_tiny", num_classes=5, num_frames=frames).train()
    x = torch.randn(2, 3, frames, size, size, requires_grad=True)
    features = model.forward_features(x)
    assert features.shape == (2, 256, (frames + 1) // 2, size // 32, size // 32)
    logits = model.forward_head(features)
    assert logits.shape == (2, 5)
    assert model.forward_head(features, pre_logits=True).shape == (2, 256)
    logits.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, dead


def _changed(block: torch.nn.Module, x: torch.Tensor, where: tuple[int, int, int]):
    """(T, H, W) map of the tokens of ``block(x)`` that change when the token ``where``
    of ``x`` changes (float64: every dependence shows)."""
    y = x.clone()
    y[0, :, where[0], where[1], where[2]] += torch.randn(x.shape[1], dtype=x.dtype)
    with torch.no_grad():
        return (block(x) != block(y)).any(dim=1)[0]


def test_local_aggregator_sees_a_neighbourhood_global_sees_everything():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 9, 11, 11, dtype=torch.float64)
    local = LocalBlock(16).double().eval()
    changed = _changed(local, x, (4, 5, 5))
    # position embedding (3x3x3) then the 5x5x5 affinity: at most 3 tokens away
    expected = torch.zeros(9, 11, 11, dtype=torch.bool)
    expected[1:8, 2:9, 2:9] = True
    assert torch.equal(changed, expected)
    glob = GlobalBlock(16, 2).double().eval()
    assert _changed(glob, x, (4, 5, 5)).all()


def test_frames_interact():
    torch.manual_seed(0)
    model = create_model("uniformer_tiny").eval()
    x = torch.randn(1, 3, 8, 48, 48)
    y = x.clone()
    y[:, :, 7] = 0.0
    with torch.no_grad():
        assert not torch.allclose(model(x), model(y))


# -- the published figures ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name,params,published",
    [
        ("uniformer_s", 21_400_400, 21.4e6),  # UniFormer-S, Kinetics-400
        ("uniformer_b", 49_813_200, 50.1e6),  # UniFormer-B (-0.6 %, see docs/models.md)
    ],
)
def test_parameter_counts_match_the_paper(name, params, published):
    with torch.device("meta"):
        model = create_model(name, num_classes=400)
    count = sum(p.numel() for p in model.parameters())
    assert count == params
    assert abs(count / published - 1) < 0.01


@pytest.mark.parametrize(
    "name,published",
    [
        ("uniformer_s", 41.8),  # 16 x 224, one view (167G for 4 views, 125G for 3)
        ("uniformer_b", 96.7),  # 16 x 224, one view (290G for 3 views)
    ],
)
def test_flops_match_the_paper(name, published):
    profile = profile_model(name, frames=16, size=224, num_classes=400)
    assert profile.gflops == pytest.approx(published, rel=0.01)
    assert [r.name for r in profile.stages] == ["stage1", "stage2", "stage3", "stage4", "other"]
    assert sum(r.macs for r in profile.stages) == profile.macs


# -- the authors' 2-D ImageNet checkpoints ------------------------------------------------


def authors_image_state(
    depths=TINY_DEPTHS, widths=TINY_WIDTHS, classes=10, seed=0
) -> dict[str, torch.Tensor]:
    """A random 2-D UniFormer state dict in the layout of the authors' ImageNet
    checkpoints (``uniformer_small_in1k.pth``), BatchNorm statistics included."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return 0.1 * torch.randn(*shape, generator=g)

    def bn(prefix, c):
        return {
            prefix + "weight": 1 + r(c), prefix + "bias": r(c),
            prefix + "running_mean": r(c), prefix + "running_var": 1 + r(c).abs(),
            prefix + "num_batches_tracked": torch.tensor(100),
        }  # fmt: skip

    state, previous = {}, 3
    for s, (depth, c) in enumerate(zip(depths, widths, strict=True), start=1):
        p = 4 if s == 1 else 2
        e = f"patch_embed{s}."
        state.update({
            e + "proj.weight": r(c, previous, p, p), e + "proj.bias": r(c),
            e + "norm.weight": 1 + r(c), e + "norm.bias": r(c),
        })  # fmt: skip
        for i in range(depth):
            b = f"blocks{s}.{i}."
            state.update({b + "pos_embed.weight": r(c, 1, 3, 3), b + "pos_embed.bias": r(c)})
            if s <= 2:
                state.update({
                    **bn(b + "norm1.", c), **bn(b + "norm2.", c),
                    b + "conv1.weight": r(c, c, 1, 1), b + "conv1.bias": r(c),
                    b + "attn.weight": r(c, 1, 5, 5), b + "attn.bias": r(c),
                    b + "conv2.weight": r(c, c, 1, 1), b + "conv2.bias": r(c),
                    b + "mlp.fc1.weight": r(4 * c, c, 1, 1), b + "mlp.fc1.bias": r(4 * c),
                    b + "mlp.fc2.weight": r(c, 4 * c, 1, 1), b + "mlp.fc2.bias": r(c),
                })  # fmt: skip
            else:
                state.update({
                    b + "norm1.weight": 1 + r(c), b + "norm1.bias": r(c),
                    b + "attn.qkv.weight": r(3 * c, c), b + "attn.qkv.bias": r(3 * c),
                    b + "attn.proj.weight": r(c, c), b + "attn.proj.bias": r(c),
                    b + "norm2.weight": 1 + r(c), b + "norm2.bias": r(c),
                    b + "mlp.fc1.weight": r(4 * c, c), b + "mlp.fc1.bias": r(4 * c),
                    b + "mlp.fc2.weight": r(c, 4 * c), b + "mlp.fc2.bias": r(c),
                })  # fmt: skip
        previous = c
    state.update(bn("norm.", widths[-1]))
    state.update({"head.weight": r(classes, widths[-1]), "head.bias": r(classes)})
    return state


def image_uniformer(state, image, depths=TINY_DEPTHS, head_dim=32) -> torch.Tensor:
    """The 2-D UniFormer of ``state`` on images (N, 3, H, W), written out with functional
    operations: the normalised feature map before pooling."""

    def bn(prefix, x):
        return F.batch_norm(
            x, state[prefix + "running_mean"], state[prefix + "running_var"],
            state[prefix + "weight"], state[prefix + "bias"], eps=1e-5,
        )  # fmt: skip

    def conv(prefix, x, stride=1, groups=1):
        w = state[prefix + "weight"]
        padding = 0 if stride > 1 else w.shape[-1] // 2
        return F.conv2d(x, w, state[prefix + "bias"], stride, padding, groups=groups)

    def ln(prefix, x, eps):
        return F.layer_norm(x, x.shape[-1:], state[prefix + "weight"], state[prefix + "bias"], eps)

    def linear(prefix, x):
        return F.linear(x, state[prefix + "weight"], state[prefix + "bias"])

    x = image
    for s in range(1, 5):
        e = f"patch_embed{s}."
        x = conv(e + "proj.", x, stride=4 if s == 1 else 2)
        x = ln(e + "norm.", x.permute(0, 2, 3, 1), 1e-5).permute(0, 3, 1, 2)
        for i in range(depths[s - 1]):
            b = f"blocks{s}.{i}."
            c = x.shape[1]
            x = x + conv(b + "pos_embed.", x, groups=c)
            if s <= 2:
                branch = conv(b + "conv1.", bn(b + "norm1.", x))
                x = x + conv(b + "conv2.", conv(b + "attn.", branch, groups=c))
                x = x + conv(b + "mlp.fc2.", F.gelu(conv(b + "mlp.fc1.", bn(b + "norm2.", x))))
                continue
            n, _, h, w = x.shape
            t = x.flatten(2).transpose(1, 2)
            qkv = linear(b + "attn.qkv.", ln(b + "norm1.", t, 1e-6))
            q, k, v = qkv.reshape(n, h * w, 3, c // head_dim, head_dim).permute(2, 0, 3, 1, 4)
            attention = (q @ k.transpose(-2, -1) * head_dim**-0.5).softmax(dim=-1)
            out = (attention @ v).transpose(1, 2).reshape(n, h * w, c)
            t = t + linear(b + "attn.proj.", out)
            t = t + linear(
                b + "mlp.fc2.", F.gelu(linear(b + "mlp.fc1.", ln(b + "norm2.", t, 1e-6)))
            )
            x = t.transpose(1, 2).reshape(n, c, h, w)
    return bn("norm.", x)


def test_pretrained_path_inflates_by_averaging_and_reports(tmp_path):
    state = authors_image_state()
    path = tmp_path / "uniformer_tiny_in1k.pth"
    torch.save({"model": state}, path)  # the authors' wrapper
    model = create_model("uniformer_tiny", num_classes=14, pretrained=path)
    result = load_uniformer_checkpoint(model, path)
    assert sorted(result.unused) == ["head.bias", "head.weight"]
    assert set(result.not_loaded) == {"head.weight", "head.bias"}
    assert set(result.loaded) == set(model.state_dict()) - {"head.weight", "head.bias"}
    blocks = [f"blocks{s}.{i}." for s, d in enumerate(TINY_DEPTHS, start=1) for i in range(d)]
    expected = {"patch_embed1.proj.weight"} | {b + "pos_embed.weight" for b in blocks}
    expected |= {b + "attn.weight" for b in blocks[:3]}  # the local blocks' 5x5 kernels
    assert set(result.inflated) == expected
    # average inflation (the authors' default): the 2-D kernel / kt in every frame
    stem = model.patch_embed1.proj.weight
    assert stem.shape == (32, 3, 3, 4, 4)
    for t in range(3):
        torch.testing.assert_close(stem[:, :, t], state["patch_embed1.proj.weight"] / 3)
    attn = model.blocks1[0].attn.weight
    torch.testing.assert_close(attn.sum(dim=2), state["blocks1.0.attn.weight"])
    assert torch.equal(model.blocks2[0].conv1.weight[:, :, 0], state["blocks2.0.conv1.weight"])
    assert torch.equal(model.patch_embed3.proj.weight[:, :, 0], state["patch_embed3.proj.weight"])
    assert torch.equal(model.blocks3[2].attn.qkv.weight, state["blocks3.2.attn.qkv.weight"])
    assert torch.equal(model.norm.running_var, state["norm.running_var"])


def test_center_inflation_computes_the_image_network_on_a_still_clip():
    state = authors_image_state()
    model = create_model("uniformer_tiny", num_classes=0).eval()
    result = load_uniformer_checkpoint(model, state, inflation="center")
    assert "patch_embed1.proj.weight" in result.inflated
    image = torch.randn(2, 3, 64, 64)
    clip = image.unsqueeze(2).expand(2, 3, 6, 64, 64)
    with torch.no_grad():
        ours = model.forward_features(clip)  # (2, 256, 3, 2, 2)
        expected = image_uniformer(state, image)  # (2, 256, 2, 2)
    assert ours.shape == (2, 256, 3, 2, 2)
    for t in range(3):
        torch.testing.assert_close(ours[:, :, t], expected, atol=1e-4, rtol=1e-4)


def test_misfits_are_named(tmp_path):
    state = authors_image_state()
    with pytest.raises(CheckpointMismatchError, match=r"missing from the checkpoint.*blocks4\.0"):
        load_uniformer_checkpoint(
            create_model("uniformer_tiny"),
            {k: v for k, v in state.items() if not k.startswith("blocks4.")},
        )
    wide = authors_image_state(widths=(64, 128, 128, 256))
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*patch_embed1\.proj"):
        load_uniformer_checkpoint(create_model("uniformer_tiny"), wide)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key.*blocks4\.1\."):
        load_uniformer_checkpoint(
            create_model("uniformer_tiny"), authors_image_state(depths=(1, 2, 3, 2))
        )
    with pytest.raises(ValueError, match="pretrained_transform_blocks applies to ResNets"):
        create_model("uniformer_tiny", pretrained=state, pretrained_transform_blocks="fresh")
    with pytest.raises(ValueError, match="mvit_tiny is not a UniFormer"):
        load_uniformer_checkpoint(create_model("mvit_tiny"), state)


# -- checkpoints, export, classifier -----------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("uniformer_tiny", num_classes=6, num_frames=4).eval()
    path = save_checkpoint(tmp_path / "uniformer_tiny.pt", model)
    again = load_model(path)
    assert type(again) is UniFormer and again.rsanet_config == model.rsanet_config
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_onnx_export_parity(tmp_path):
    pytest.importorskip("onnxruntime")
    from rsanet.inference import export_model

    torch.manual_seed(0)
    model = create_model("uniformer_tiny", num_classes=6, num_frames=4).eval()
    result = export_model(model, tmp_path / "uniformer_tiny.onnx", "onnx", frames=4, size=32)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4


def test_reset_classifier_and_clip_check():
    model = create_model("uniformer_tiny", num_classes=5)
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model.rsanet_config["num_classes"] == 3
    model.reset_classifier(0)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 2, 32, 32)).shape == (1, 256)
    with pytest.raises(ValueError, match=r"uniformer_tiny expects clips \(N, 3, T, H, W\)"):
        model(torch.zeros(1, 8, 3, 32, 32))
