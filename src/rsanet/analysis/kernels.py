"""The paper's kernel figure: what an RSA layer's basic and relational kernels look like at a
query position, for a clip and for the same clip played backwards.

The basic kernel (kappa^V) is a function of the query alone, so for a layer whose input at
the query depends only on that frame (the first RSA layer of a TSN ResNet: everything before
it is 1 x k x k) it is the same whichever way the clip plays. The relational kernel (kappa^R)
also depends on the keys around the query, in time, so it changes when the motion reverses.
The position compared in the backward clip is the one showing the same frame: t -> T - 1 - t.

Each kernel is (kt, kh, kw): one kh x kw picture per temporal offset, drawn as a row of a
grid with matplotlib (Agg; no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

DIRECTIONS = ("forward", "backward")
KINDS = ("basic", "relational")


class _Captured(Exception):
    """Stops the forward pass once the layer input is captured."""


def rsa_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every RSA layer of ``model``, in forward order."""
    from rsanet.layers import RSA

    return [(name, module) for name, module in model.named_modules() if isinstance(module, RSA)]


def resolve_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """The RSA layer called ``name`` (a module name such as ``layer2.1.conv2``, or a block
    name such as ``layer2.1``); the first RSA layer when ``name`` is None."""
    layers = rsa_layers(model)
    if not layers:
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} has no RSA layer")
    if name is None:
        return layers[0]
    for candidate in (name, f"{name}.conv2"):
        for layer_name, layer in layers:
            if layer_name == candidate:
                return layer_name, layer
    known = ", ".join(layer_name for layer_name, _ in layers)
    raise ValueError(f"no RSA layer named {name!r}; RSA layers: {known}")


def layer_input(model: nn.Module, layer: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """The input (N, C, T, H, W) that ``layer`` receives when ``model`` runs on ``clip``
    (the forward pass stops there)."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach())
        raise _Captured

    handle = layer.register_forward_pre_hook(hook)
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(clip)
    except _Captured:
        pass
    finally:
        handle.remove()
        model.train(training)
    if not captured:
        raise ValueError("the layer was not reached by the forward pass")
    return captured[0]


@dataclass
class KernelComparison:
    """Kernels of one RSA layer, head and query for a clip played both ways.

    kernels[direction][kind]: (kt, kh, kw) weights on the neighbours, direction in
    ``forward``/``backward``, kind in ``basic``/``relational``.
    cells[direction]: the query's (t, i, j) in the layer's feature map.
    position: the query (t, y, x) in the forward clip (frame, pixel row and column).
    frame: the query frame (H, W, 3) uint8 (the same in both clips), for display.
    """

    layer: str
    head: int
    position: tuple[int, int, int]
    cells: dict[str, tuple[int, int, int]]
    kernels: dict[str, dict[str, np.ndarray]]
    frame: np.ndarray | None = None

    def difference(self, kind: str) -> float:
        """max |kernel(forward) - kernel(backward)| of ``kind``."""
        return float(np.abs(self.kernels["forward"][kind] - self.kernels["backward"][kind]).max())

    def describe(self) -> str:
        parts = [f"{self.layer} head {self.head} at (t, y, x) = {self.position}"]
        for kind in KINDS:
            if kind in self.kernels["forward"]:
                parts.append(
                    f"{kind} kernel max |forward - backward| = {self.difference(kind):.3g}"
                )
        return "; ".join(parts)


def _query_cell(
    position: tuple[int, int, int], clip_shape: torch.Size, feature_shape: torch.Size
) -> tuple[int, int, int]:
    frames, height, width = clip_shape[2:]
    t, y, x = position
    if not (0 <= t < frames and 0 <= y < height and 0 <= x < width):
        raise ValueError(
            f"position (t, y, x) = {position} is outside the clip "
            f"({frames} frames of {height} x {width})"
        )
    feature_t, feature_h, feature_w = feature_shape[2:]
    if feature_t != frames:
        raise ValueError(f"the layer sees {feature_t} frames, the clip has {frames}")
    return t, y * feature_h // height, x * feature_w // width


def compare_kernels(
    model: nn.Module,
    clip: torch.Tensor,
    *,
    layer: str | None = None,
    position: tuple[int, int, int] | None = None,
    head: int = 0,
    frames: np.ndarray | None = None,
) -> KernelComparison:
    """Kernels of RSA ``layer`` (default: the first) for ``clip`` (1, 3, T, H, W) and for
    ``clip`` played backwards, at the query ``position`` (t, y, x) (default: the centre),
    head ``head``. ``frames`` (T, H, W, 3) uint8 are kept for the picture."""
    if clip.dim() != 5 or clip.shape[0] != 1:
        raise ValueError(f"expected one clip (1, 3, T, H, W), got {tuple(clip.shape)}")
    name, module = resolve_layer(model, layer)
    if not 0 <= head < module.num_heads:
        raise ValueError(f"{name} has heads 0..{module.num_heads - 1}, got head {head}")
    t_count, height, width = clip.shape[2:]
    if position is None:
        position = (t_count // 2, height // 2, width // 2)
    position = tuple(int(v) for v in position)
    backward_clip = clip.flip(2)
    kernels: dict[str, dict[str, np.ndarray]] = {}
    cells: dict[str, tuple[int, int, int]] = {}
    for direction, data in zip(DIRECTIONS, (clip, backward_clip), strict=True):
        features = layer_input(model, module, data)
        cell = _query_cell(position, clip.shape, features.shape)
        if direction == "backward":  # the same frame in the reversed clip
            cell = (t_count - 1 - cell[0], cell[1], cell[2])
        everything = module.neighbour_kernels(features)
        t, i, j = cell
        kernels[direction] = {
            kind: value[0, t, i, j, head].float().numpy() for kind, value in everything.items()
        }
        cells[direction] = cell
    return KernelComparison(
        layer=name,
        head=head,
        position=position,
        cells=cells,
        kernels=kernels,
        frame=None if frames is None else frames[position[0]],
    )


def _grid(figure, kernels: list[tuple[str, np.ndarray]], limits: list[float]) -> None:
    """Rows of kt panels (kh x kw each), one row per (title, kernel)."""
    kt = kernels[0][1].shape[0]
    height = figure.get_figheight()
    axes = figure.subplots(
        len(kernels),
        kt,
        squeeze=False,
        gridspec_kw={
            "left": 0.1,
            "right": 0.92,
            "bottom": 0.1 / height,
            "top": 1 - 0.75 / height,
            "wspace": 0.08,
            "hspace": 0.12,
        },
    )
    for row, ((title, kernel), limit) in enumerate(zip(kernels, limits, strict=True)):
        for dt in range(kt):
            ax = axes[row][dt]
            image = ax.imshow(kernel[dt], cmap="coolwarm", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"dt = {dt - kt // 2:+d}", fontsize=9)
            if dt == 0:
                ax.set_ylabel(title, fontsize=9)
        figure.colorbar(image, ax=list(axes[row]), fraction=0.02, pad=0.01)


def _save(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def draw_kernels(comparison: KernelComparison, out_dir: str | Path) -> list[Path]:
    """Write the pictures to ``out_dir``: ``kernels.png`` (every kind and direction, one
    colour scale per kind), ``{kind}_{direction}.png`` grids, ``query.png`` (the query frame
    with the position marked, when frames were given) and ``kernels.npz`` (the values).
    Returns the paths written."""
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in KINDS if k in comparison.kernels["forward"]]
    limits = {
        kind: max(float(np.abs(comparison.kernels[d][kind]).max()) for d in DIRECTIONS) or 1.0
        for kind in kinds
    }
    kt = comparison.kernels["forward"][kinds[0]].shape[0]
    written = []
    rows = [(kind, direction) for kind in kinds for direction in DIRECTIONS]
    figure = Figure(figsize=(1.6 * kt + 1.2, 1.6 * len(rows) + 0.8), layout=None)
    figure.suptitle(
        f"{comparison.layer}, head {comparison.head}, query (t, y, x) = {comparison.position}",
        fontsize=10,
    )
    _grid(
        figure,
        [(f"{kind}\n{direction}", comparison.kernels[direction][kind]) for kind, direction in rows],
        [limits[kind] for kind, _ in rows],
    )
    written.append(_save(figure, out / "kernels.png"))
    for kind, direction in rows:
        figure = Figure(figsize=(1.6 * kt + 1.2, 2.2), layout=None)
        figure.suptitle(f"{kind} kernel, {direction} clip ({comparison.layer})", fontsize=10)
        _grid(figure, [(direction, comparison.kernels[direction][kind])], [limits[kind]])
        written.append(_save(figure, out / f"{kind}_{direction}.png"))
    if comparison.frame is not None:
        figure = Figure(figsize=(4, 4), layout=None)
        ax = figure.subplots()
        ax.imshow(comparison.frame)
        _, y, x = comparison.position
        ax.plot([x], [y], marker="+", markersize=18, color="red", mew=2)
        ax.set_title(f"query frame t = {comparison.position[0]}", fontsize=10)
        ax.axis("off")
        written.append(_save(figure, out / "query.png"))
    arrays = {
        f"{kind}_{direction}": comparison.kernels[direction][kind] for kind, direction in rows
    }
    np.savez(out / "kernels.npz", **arrays)
    written.append(out / "kernels.npz")
    return written


def video_clip(path: str | Path, *, num_frames: int, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The evaluation clip of a video: TSN segment centres, short side ``size * 256 / 224``,
    centre crop ``size``, ImageNet normalisation -> (1, 3, T, size, size), and the same
    frames for display (T, size, size, 3) uint8."""
    from rsanet.data import PyAVVideo, TSNSampler, build_transforms, denormalize

    with PyAVVideo(path) as video:
        indices = TSNSampler(num_frames, train=False)(video.num_frames())[0]
        frames = video.read(indices.tolist())
    clip, _ = build_transforms(train=False, size=size)(frames)
    shown = (denormalize(clip) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    return clip.unsqueeze(0), shown
