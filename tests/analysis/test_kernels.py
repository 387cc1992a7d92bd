"""The kernel figure: the basic kernel does not change when the clip plays backwards, the
relational kernel does; the pictures and ``rsanet visualize kernels``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import rsanet.cli
from rsanet.analysis import (
    compare_kernels,
    draw_kernels,
    layer_input,
    resolve_layer,
    rsa_layers,
    video_clip,
)


@pytest.fixture(scope="module")
def clip(bikes_clip):
    return video_clip(bikes_clip, num_frames=8, size=64)


def test_rsa_layers_and_names(tiny_model):
    names = [name for name, _ in rsa_layers(tiny_model)]
    assert names == [
        "layer1.2.conv2",
        "layer2.1.conv2",
        "layer2.3.conv2",
        "layer3.1.conv2",
        "layer3.3.conv2",
        "layer3.5.conv2",
        "layer4.1.conv2",
    ]
    assert resolve_layer(tiny_model)[0] == "layer1.2.conv2"
    assert resolve_layer(tiny_model, "layer3.3")[0] == "layer3.3.conv2"
    with pytest.raises(ValueError, match="no RSA layer named 'layer1.0'; RSA layers: layer1.2"):
        resolve_layer(tiny_model, "layer1.0")


def test_video_clip_is_the_evaluation_clip(clip):
    data, frames = clip
    assert data.shape == (1, 3, 8, 64, 64) and frames.shape == (8, 64, 64, 3)
    assert frames.dtype == np.uint8 and frames.std() > 10


def test_basic_kernel_ignores_the_direction_relational_kernel_does_not(tiny_model, clip):
    data, frames = clip
    # the first RSA layer sees each frame separately processed (1 x k x k layers only), so
    # the query of a frame is the same in both clips: its basic kernel must be identical
    result = compare_kernels(tiny_model, data, frames=frames)
    assert result.layer == "layer1.2.conv2" and result.position == (4, 32, 32)
    assert result.cells == {"forward": (4, 8, 8), "backward": (3, 8, 8)}
    basic, relational = result.kernels["forward"]["basic"], result.kernels["forward"]["relational"]
    assert basic.shape == relational.shape == (5, 7, 7)
    assert np.abs(basic).max() > 1e-3
    assert result.difference("basic") < 1e-6
    assert result.difference("relational") > 0.05 * np.abs(relational).max()
    # a clip that does not move: reversing it changes nothing, relational kernel included
    still = data[:, :, :1].expand_as(data).contiguous()
    frozen = compare_kernels(tiny_model, still, position=(2, 10, 50))
    assert frozen.difference("relational") < 1e-6


def test_kernels_are_the_layer_s_own(tiny_model, clip):
    data, _ = clip
    name, layer = resolve_layer(tiny_model, "layer2.1")
    result = compare_kernels(tiny_model, data, layer="layer2.1", position=(6, 0, 63), head=2)
    features = layer_input(tiny_model, layer, data)
    assert features.shape[2:] == (8, 8, 8)
    expected = layer.neighbour_kernels(features)["relational"][0, 6, 0, 7, 2]
    assert torch.equal(torch.from_numpy(result.kernels["forward"]["relational"]), expected)
    assert result.cells["backward"] == (1, 0, 7)


def test_bad_queries(tiny_model, clip):
    data, _ = clip
    with pytest.raises(ValueError, match="heads 0..3, got head 4"):
        compare_kernels(tiny_model, data, head=4)
    with pytest.raises(ValueError, match="outside the clip"):
        compare_kernels(tiny_model, data, position=(8, 0, 0))


def test_pictures(tiny_model, clip, tmp_path):
    data, frames = clip
    result = compare_kernels(tiny_model, data, frames=frames)
    written = draw_kernels(result, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "kernels.png",
            "basic_forward.png",
            "basic_backward.png",
            "relational_forward.png",
            "relational_backward.png",
            "query.png",
            "kernels.npz",
        ]
    )
    for path in written:
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.format == "PNG" and image.width > 200 and image.height > 100
    saved = np.load(tmp_path / "out" / "kernels.npz")
    assert np.array_equal(saved["relational_backward"], result.kernels["backward"]["relational"])
    assert np.array_equal(saved["basic_forward"], saved["basic_backward"])


def test_cli_visualize_kernels(tiny_checkpoint, bikes_clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rsanet.cli, "COMMAND_MODULES", ["visualize"])
    out = tmp_path / "pictures"
    code = rsanet.cli.main(
        [
            "visualize",
            "kernels",
            "--checkpoint",
            str(tiny_checkpoint),
            str(bikes_clip),
            "--out",
            str(out),
            "--size",
            "64",
            "--layer",
            "layer2.3",
            "--position",
            "3,20,40",
            "--head",
            "1",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "layer2.3.conv2 head 1 at (t, y, x) = (3, 20, 40)" in text
    assert (out / "kernels.png").is_file() and (out / "query.png").is_file()
    code = rsanet.cli.main(
        [
            "visualize",
            "kernels",
            "--checkpoint",
            str(tiny_checkpoint),
            str(bikes_clip),
            "--out",
            str(out),
            "--layer",
            "stem",
        ]
    )
    assert code == 2 and "no RSA layer named 'stem'" in capsys.readouterr().err
    code = rsanet.cli.main(
        [
            "visualize",
            "kernels",
            "--checkpoint",
            str(tiny_checkpoint),
            str(bikes_clip),
            "--out",
            str(out),
            "--list-layers",
        ]
    )
    assert code == 0 and capsys.readouterr().out.count("heads") == 7
