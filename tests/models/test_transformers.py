"""The video transformers (TimeSformer, ViViT, MViT): shapes, gradients, what attends to
what, checkpoints, ONNX export, ViT/DeiT initialisation and the published figures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsanet.models import (
    CheckpointMismatchError,
    MViT,
    TimeSformer,
    ViTEncoder,
    ViViTFactorisedEncoder,
    create_model,
    inflate_patch_kernel,
    list_models,
    load_model,
    load_vit_checkpoint,
    profile_model,
    resize_pos_embed,
    save_checkpoint,
)
from rsanet.models.profile import sdpa_macs

TINY = ["timesformer_tiny", "vivit_tiny", "mvit_tiny"]
BASE = ["timesformer_b", "vivit_b", "mvit_b", "mvit_s"]


def randomise_zeros(model: torch.nn.Module) -> None:
    """Give every all-zero parameter (TimeSformer's temporal_fc, biases) small random
    values, so that every parameter influences the output."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=generator))


def test_registered_and_tiny_models_are_small():
    assert set(TINY + BASE) <= set(list_models())
    assert list_models("timesformer_*") == ["timesformer_b", "timesformer_tiny"]
    for name in TINY:
        model = create_model(name)
        assert sum(p.numel() for p in model.parameters()) < 2_000_000, name
        assert model.num_classes == 174 and model.num_frames == 8


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("frames,size", [(4, 32), (8, 48)])
def test_forward_and_backward_reach_every_parameter(name, frames, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, num_frames=frames).train()
    randomise_zeros(model)
    x = torch.randn(2, 3, frames, size, size, requires_grad=True)
    tokens = model.forward_features(x)
    assert tokens.dim() == 3 and tokens.shape[0] == 2 and tokens.shape[2] == model.num_features
    logits = model.forward_head(tokens)
    assert logits.shape == (2, 5)
    assert model.forward_head(tokens, pre_logits=True).shape == (2, model.num_features)
    logits.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, dead


def test_token_counts():
    x = torch.zeros(1, 3, 8, 48, 48)
    with torch.no_grad():
        assert create_model("timesformer_tiny").forward_features(x).shape == (1, 1 + 8 * 36, 128)
        assert create_model("vivit_tiny").forward_features(x).shape == (1, 1 + 4, 128)
        # MViT: 3x7x7 patches at stride 2x4x4 -> 4x12x12, then 6x6, 3x3, 2x2
        assert create_model("mvit_tiny").forward_features(x).shape == (1, 1 + 4 * 2 * 2, 192)


def test_mvit_b_stages_pool_queries_keys_and_values():
    """MViT-B 16x4 at 224: tokens 8x56x56 -> 28 -> 14 -> 7, widths 96 -> 768; keys and
    values pooled to 8x7x7 (stride 1x8x8, then 1x4x4, 1x2x2, 1x1x1), except in a stage's
    first block, which pools them from the previous stage's grid (8x14x14)."""
    with torch.device("meta"):
        model = create_model("mvit_b", num_classes=400)
        shapes = {}

        def hook(name):
            def record(module, args, out):
                shapes[name] = (tuple(out[0].shape), out[1])

            return record

        for i, block in enumerate(model.blocks):
            block.register_forward_hook(hook(i))
        keys = {}
        for i, block in enumerate(model.blocks):
            if block.attn.pool_k is not None:
                block.attn.pool_k.register_forward_hook(
                    lambda m, a, out, i=i: keys.__setitem__(i, out[1])
                )
        model(torch.zeros(1, 3, 16, 224, 224))
    stages = model.stage_blocks()
    assert stages == [[0], [1, 2], list(range(3, 14)), [14, 15]]
    assert shapes[0] == ((1, 1 + 8 * 56 * 56, 192), (8, 56, 56))  # widened by its MLP
    assert shapes[1] == ((1, 1 + 8 * 28 * 28, 192), (8, 28, 28))
    assert shapes[3][1] == (8, 14, 14) and shapes[14][1] == (8, 7, 7)
    assert shapes[15][0] == (1, 1 + 8 * 7 * 7, 768)
    assert [model.blocks[i].attn.num_heads for i in (0, 1, 3, 14)] == [1, 2, 4, 8]
    assert all(keys[i] == ((8, 14, 14) if i in (1, 3, 14) else (8, 7, 7)) for i in range(16))


# -- what attends to what ---------------------------------------------------------------


def _changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per token of sample 0: whether any channel differs at all (tokens that do not see
    the perturbation are computed from identical inputs, so they are bitwise equal)."""
    return (a != b).any(dim=-1)[0]


def test_divided_attention_is_temporal_then_spatial():
    torch.manual_seed(0)
    model = create_model("timesformer_tiny").eval()
    randomise_zeros(model)
    block = model.blocks[0].double()  # float64: every dependence shows above rounding
    frames, per_frame = 4, 36
    x = torch.randn(1, 1 + frames * per_frame, 128, dtype=torch.float64)
    y = x.clone()
    y[0, 1 + 2 * per_frame + 5] += torch.randn(128, dtype=torch.float64)  # not a constant:
    # LayerNorm would remove that  # the patch at position 5 of frame 2
    with torch.no_grad():
        temporal = _changed(block.temporal(x, frames), block.temporal(y, frames))
        spatial = _changed(block.spatial(x, frames), block.spatial(y, frames))
        both = _changed(block(x, frames), block(y, frames))
    grid = temporal[1:].reshape(frames, per_frame)
    # temporal attention: the same position in every frame, nothing else (class token kept)
    assert grid[:, 5].all() and grid.sum() == frames and not temporal[0]
    # spatial attention: every patch of frame 2 and the class token, no other frame
    grid = spatial[1:].reshape(frames, per_frame)
    assert grid[2].all() and grid.sum() == per_frame and spatial[0]
    # both: every patch of every frame
    assert both.all()


def test_vivit_spatial_encoder_sees_one_time_step():
    torch.manual_seed(0)
    model = create_model("vivit_tiny").eval()
    outputs = []
    model.spatial.register_forward_hook(lambda m, a, out: outputs.append(out))
    x = torch.randn(1, 3, 8, 48, 48)
    y = x.clone()
    y[:, :, 2:4] = torch.randn(1, 3, 2, 48, 48)  # the tubelet frames of time step 1
    with torch.no_grad():
        tx, ty = model.forward_features(x), model.forward_features(y)
    per_step = (outputs[0] - outputs[1]).abs().amax(dim=(1, 2)) > 1e-6
    assert per_step.tolist() == [False, True, False, False]
    assert _changed(tx, ty).all()  # the temporal encoder mixes the steps


def test_frames_interact_in_every_model():
    for name in TINY:
        torch.manual_seed(0)
        model = create_model(name).eval()
        randomise_zeros(model)
        x = torch.randn(1, 3, 8, 48, 48)
        y = x.clone()
        y[:, :, 7] = 0.0
        with torch.no_grad():
            assert not torch.allclose(model(x), model(y)), name


def test_other_sizes_resample_the_position_embeddings():
    model = create_model("timesformer_tiny").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 3, 64, 64)).shape == (1, 174)
    built = create_model("timesformer_tiny", img_size=32, num_frames=4)
    assert built.pos_embed.shape == (1, 1 + 16, 128) and built.time_embed.shape == (1, 4, 128)


# -- checkpoints and export -------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=6, num_frames=4).eval()
    randomise_zeros(model)
    path = save_checkpoint(tmp_path / f"{name}.pt", model, classes=list("abcdef"))
    again = load_model(path)
    assert type(again) is type(model) and again.rsanet_config == model.rsanet_config
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


@pytest.mark.parametrize("name", TINY)
def test_onnx_export_parity(name, tmp_path):
    pytest.importorskip("onnxruntime")
    from rsanet.inference import export_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=6, num_frames=4).eval()
    randomise_zeros(model)
    result = export_model(model, tmp_path / f"{name}.onnx", "onnx", frames=4, size=32)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4


def test_reset_classifier():
    model = create_model("mvit_tiny", num_classes=5)
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model.rsanet_config["num_classes"] == 3
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, model.num_features)


def test_wrong_clip_shape_is_named():
    with pytest.raises(ValueError, match=r"vivit_tiny expects clips \(N, 3, T, H, W\)"):
        create_model("vivit_tiny")(torch.zeros(1, 8, 3, 32, 32))


# -- ViT / DeiT initialisation ----------------------------------------------------------


def timm_vit_state(
    dim=128, depth=4, heads=4, patch=8, img=32, classes=10, distilled=False, seed=0
) -> dict[str, torch.Tensor]:
    """A random ViT (or DeiT with distillation) state dict in timm's layout."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return 0.05 * torch.randn(*shape, generator=g)

    prefix = 2 if distilled else 1
    state = {
        "cls_token": r(1, 1, dim),
        "pos_embed": r(1, prefix + (img // patch) ** 2, dim),
        "patch_embed.proj.weight": r(dim, 3, patch, patch),
        "patch_embed.proj.bias": r(dim),
        "norm.weight": 1 + r(dim),
        "norm.bias": r(dim),
        "head.weight": r(classes, dim),
        "head.bias": r(classes),
    }
    if distilled:
        state.update(
            {
                "dist_token": r(1, 1, dim),
                "head_dist.weight": r(classes, dim),
                "head_dist.bias": r(classes),
            }
        )
    for i in range(depth):
        b = f"blocks.{i}."
        state.update({
            b + "norm1.weight": 1 + r(dim), b + "norm1.bias": r(dim),
            b + "attn.qkv.weight": r(3 * dim, dim), b + "attn.qkv.bias": r(3 * dim),
            b + "attn.proj.weight": r(dim, dim), b + "attn.proj.bias": r(dim),
            b + "norm2.weight": 1 + r(dim), b + "norm2.bias": r(dim),
            b + "mlp.fc1.weight": r(4 * dim, dim), b + "mlp.fc1.bias": r(4 * dim),
            b + "mlp.fc2.weight": r(dim, 4 * dim), b + "mlp.fc2.bias": r(dim),
        })  # fmt: skip
    return state


def image_vit(state: dict[str, torch.Tensor], image: torch.Tensor, depth: int = 4):
    """The image ViT of ``state`` on images (B, 3, H, W): normalised tokens."""
    dim = state["cls_token"].shape[-1]
    grid = image.shape[-1] // state["patch_embed.proj.weight"].shape[-1]
    encoder = ViTEncoder(dim, depth, 4, num_tokens=grid * grid)
    skip = ("patch_embed", "head", "dist_token")
    enc_state = {k: v for k, v in state.items() if not k.startswith(skip)}
    enc_state["pos_embed"] = resize_pos_embed(state["pos_embed"], (grid, grid))
    encoder.load_state_dict(enc_state)
    patches = F.conv2d(
        image, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=8
    )
    return encoder.eval()(patches.flatten(2).transpose(1, 2))


def test_timesformer_from_vit_computes_the_vit_on_a_still_clip(tmp_path):
    state = timm_vit_state(img=32)
    path = tmp_path / "vit.pth"
    torch.save({"model": state}, path)
    model = create_model("timesformer_tiny", depth=4, img_size=48, num_frames=4).eval()
    result = load_vit_checkpoint(model, path)
    assert sorted(result.unused) == ["head.bias", "head.weight"]
    assert result.resized == ["pos_embed", "patch_embed.proj.weight"]
    assert "blocks.3.temporal_attn.qkv.weight" in result.copied
    assert torch.equal(model.blocks[3].temporal_attn.qkv.weight, state["blocks.3.attn.qkv.weight"])
    untouched = {"time_embed", "head.weight", "head.bias"}
    untouched |= {f"blocks.{i}.temporal_fc.{p}" for i in range(4) for p in ("weight", "bias")}
    assert set(result.not_loaded) == untouched
    assert torch.equal(model.patch_embed.proj.weight[:, :, 0], state["patch_embed.proj.weight"])
    # a still clip: every frame is the image, temporal_fc and time_embed are zero
    image = torch.randn(2, 3, 48, 48)
    clip = image.unsqueeze(2).expand(2, 3, 4, 48, 48)
    with torch.no_grad():
        ours = model.forward_features(clip)
        expected = image_vit(state, image)
    torch.testing.assert_close(ours[:, 0], expected[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, 1:37], expected[:, 1:], atol=1e-5, rtol=1e-5)


def test_vivit_from_deit_inflates_the_patch_kernel(tmp_path):
    state = timm_vit_state(img=48, distilled=True)
    model = create_model("vivit_tiny", num_frames=4).eval()
    result = load_vit_checkpoint(model, state)
    assert sorted(result.unused) == [
        "dist_token",
        "head.bias",
        "head.weight",
        "head_dist.bias",
        "head_dist.weight",
    ]
    assert all(k.startswith(("patch_embed.", "spatial.")) for k in result.loaded)
    assert set(result.not_loaded) == {
        k for k in model.state_dict() if k.startswith(("temporal.", "head."))
    }
    # the distillation token's position is dropped, the grid is the same: exact copy
    expected_pos = torch.cat([state["pos_embed"][:, :1], state["pos_embed"][:, 2:]], dim=1)
    assert torch.equal(model.spatial.pos_embed, expected_pos)
    kernel = model.patch_embed.proj.weight  # central frame of the 2-frame tubelet
    assert (
        torch.equal(kernel[:, :, 1], state["patch_embed.proj.weight"]) and not kernel[:, :, 0].any()
    )
    image = torch.randn(1, 3, 48, 48)
    clip = image.unsqueeze(2).expand(1, 3, 4, 48, 48)
    steps = []
    model.spatial.register_forward_hook(lambda m, a, out: steps.append(out))
    with torch.no_grad():
        model(clip)
        expected = image_vit(state | {"pos_embed": expected_pos}, image)
    torch.testing.assert_close(steps[0][0], expected[0], atol=1e-5, rtol=1e-5)
    # with a distillation token the DeiT token is loaded too
    distilled = create_model("vivit_tiny", num_frames=4, distilled=True)
    result = load_vit_checkpoint(distilled, state)
    assert "spatial.dist_token" in result.loaded
    assert torch.equal(distilled.spatial.pos_embed, state["pos_embed"])


def test_pretrained_path_and_misfits(tmp_path):
    state = timm_vit_state(img=48, depth=6)
    path = tmp_path / "vit.pth"
    torch.save(state, path)
    model = create_model("timesformer_tiny", pretrained=path)
    assert torch.equal(model.blocks[5].mlp.fc2.weight, state["blocks.5.mlp.fc2.weight"])
    with pytest.raises(
        CheckpointMismatchError, match=r"missing from the checkpoint, e\.g\. blocks\.4"
    ):
        create_model("timesformer_tiny", pretrained=timm_vit_state(depth=4, img=48) | {})
    wide = timm_vit_state(dim=64, img=48, depth=6)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*cls_token"):
        load_vit_checkpoint(create_model("timesformer_tiny"), wide)
    with pytest.raises(ValueError, match="mvit_tiny has no ViT/DeiT layout"):
        create_model("mvit_tiny", pretrained=path)


def test_resize_and_inflation_helpers():
    pos = torch.randn(1, 1 + 16, 8)
    assert resize_pos_embed(pos, (4, 4)) is pos
    constant = torch.ones(1, 1 + 16, 8) * torch.arange(8.0)
    torch.testing.assert_close(
        resize_pos_embed(constant, (7, 7))[:, 1:], torch.ones(1, 49, 8) * torch.arange(8.0)
    )
    grid = pos[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    reference = F.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False)
    out = resize_pos_embed(pos, (6, 6))
    assert torch.equal(out[:, :1], pos[:, :1])
    torch.testing.assert_close(out[:, 1:], reference.permute(0, 2, 3, 1).reshape(1, 36, 8))
    kernel = torch.randn(5, 3, 4, 4)
    image = torch.randn(1, 3, 8, 8)
    still = image.unsqueeze(2).expand(1, 3, 3, 8, 8)
    for mode in ("center", "average"):
        inflated = inflate_patch_kernel(kernel, 3, mode)
        torch.testing.assert_close(
            F.conv3d(still, inflated, stride=(3, 4, 4))[:, :, 0], F.conv2d(image, kernel, stride=4)
        )


# -- parameters and FLOPs against the papers -------------------------------------------


@pytest.mark.parametrize(
    "name,params,published",
    [
        ("timesformer_b", 121_566_352, 121.4e6),  # TimeSformer, divided space-time
        ("vivit_b", 115_062_928, 115.1e6),  # ViViT-B factorised encoder
        ("mvit_b", 36_610_672, 36.6e6),  # MViT-B 16x4
        ("mvit_s", 26_038_032, 26.1e6),  # MViT-S 16x4 (reconstructed configuration)
    ],
)
def test_base_parameter_counts_match_the_papers(name, params, published):
    with torch.device("meta"):  # no memory, no initialisation cost
        model = create_model(name, num_classes=400)
    count = sum(p.numel() for p in model.parameters())
    assert count == params
    assert abs(count / published - 1) < 0.01


def timesformer_macs(d, depth, frames, per_frame, patch, classes, mlp=4):
    """MACs of our TimeSformer by formula (LayerNorm counted 5 per element, as fvcore)."""
    t, s = frames, per_frame
    block = (
        5 * t * s * d + 3 * t * s * d * d + 2 * s * t * t * d + 2 * t * s * d * d  # temporal
        + 5 * t * (s + 1) * d + 4 * t * (s + 1) * d * d + 2 * t * (s + 1) ** 2 * d  # spatial
        + 5 * (1 + t * s) * d + 2 * mlp * (1 + t * s) * d * d  # MLP
    )  # fmt: skip
    return t * s * d * 3 * patch * patch + depth * block + 5 * (1 + t * s) * d + d * classes


def encoder_macs(d, depth, length, mlp=4):
    """MACs of a ViT encoder over one sequence of ``length`` tokens (prefix included)."""
    block = 10 * length * d + 4 * length * d * d + 2 * length**2 * d + 2 * mlp * length * d * d
    return depth * block + 5 * length * d


def vivit_macs(d, spatial, temporal, steps, per_step, tubelet, patch, classes):
    embed = steps * per_step * d * 3 * tubelet * patch * patch
    return (
        embed
        + steps * encoder_macs(d, spatial, per_step + 1)
        + encoder_macs(d, temporal, steps + 1)
        + d * classes
    )


def test_formulas_are_what_fvcore_counts_and_give_the_published_flops():
    tiny = profile_model("timesformer_tiny", frames=4, size=32, num_classes=7)
    assert tiny.macs == timesformer_macs(128, 6, 4, 16, 8, 7)
    tiny = profile_model("vivit_tiny", frames=4, size=32, num_classes=7)
    assert tiny.macs == vivit_macs(128, 4, 2, 2, 16, 2, 8, 7)
    # TimeSformer: 196 GFLOPs per 8 x 224 clip, 0.59 TFLOPs for 3 views
    timesformer = timesformer_macs(768, 12, 8, 196, 16, 400) / 1e9
    assert timesformer == pytest.approx(196, rel=0.01)
    assert 3 * timesformer / 1e3 == pytest.approx(0.59, abs=0.005)
    # ViViT-B factorised encoder, 32 x 224, 2 x 16 x 16 tubelets: 284.4 GFLOPs
    assert vivit_macs(768, 12, 4, 16, 196, 2, 16, 400) / 1e9 == pytest.approx(284.4, rel=0.01)


def test_mvit_flops_match_the_paper():
    b = profile_model("mvit_b", frames=16, size=224, num_classes=400)
    assert b.gflops == pytest.approx(70.5, rel=0.01)  # MViT-B 16x4
    assert [r.name for r in b.stages] == ["embed", "stage1", "stage2", "stage3", "stage4", "other"]
    assert sum(r.macs for r in b.stages) == b.macs
    s = profile_model("mvit_s", frames=16, size=224, num_classes=400)
    assert s.gflops == pytest.approx(32.9, rel=0.1)  # reconstructed MViT-S: 30.1 (-9%)


def test_sdpa_is_counted_as_its_two_products():
    class Inputs:
        def __init__(self, shape):
            self.shape = shape

        def isCompleteTensor(self):  # noqa: N802 (fvcore's jit value interface)
            return True

        def type(self):
            return self

        def sizes(self):
            return list(self.shape)

    q, k, v = Inputs((2, 4, 10, 8)), Inputs((2, 4, 6, 8)), Inputs((2, 4, 6, 16))
    assert sdpa_macs([q, k, v], []) == 2 * 4 * 10 * 6 * (8 + 16)


def test_classes_are_exposed():
    assert isinstance(create_model("timesformer_tiny"), TimeSformer)
    assert isinstance(create_model("vivit_tiny"), ViViTFactorisedEncoder)
    assert isinstance(create_model("mvit_tiny"), MViT)
