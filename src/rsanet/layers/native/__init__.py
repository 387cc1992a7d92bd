"""Fused CPU kernels for RSA: the neighbourhood products of the re-associated order
(``neighbourhood.cpp``), the per-position products of the authors' order in inference
(``official.cpp``) and the input gradient of the K_H1 filter (``filter.cpp``), on the
small-GEMM micro-kernel of ``gemm.h``.

Compiled on first use with the system's C++ compiler (``$CXX``, else ``c++``; a few
seconds, no PyTorch headers) into a per-user cache, and called through ctypes. Where it cannot be
built or does not apply (no compiler, not float32 on the CPU, export, ``RSANET_NATIVE=0``),
:func:`available` is False and the layer computes the same products with PyTorch operators.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

SOURCES = [
    Path(__file__).with_name(name) for name in ("neighbourhood.cpp", "official.cpp", "filter.cpp")
]
HEADERS = [Path(__file__).with_name(name) for name in ("lanes.h", "gemm.h")]
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c++17"]

_library: ctypes.CDLL | None = None
_failed = False


def enabled() -> bool:
    """False when ``RSANET_NATIVE=0`` asks for the PyTorch operators everywhere."""
    return os.environ.get("RSANET_NATIVE", "1") != "0"


def _cache_dir() -> Path:
    root = os.environ.get("RSANET_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root or Path.home() / ".cache") / "rsanet"


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    # -march=native: the build belongs to this machine, so the machine is in the key
    key = hashlib.sha256(
        b"".join(path.read_bytes() for path in SOURCES + HEADERS)
        + " ".join([compiler, *FLAGS, platform.node()]).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            built = Path(work) / target.name
            result = subprocess.run(
                [compiler, *FLAGS, *map(str, SOURCES), "-o", str(built)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed:\n{result.stderr[-2000:]}")
            os.replace(built, target)  # atomic: concurrent builders never see half a file
    library = ctypes.CDLL(str(target))
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    library.rsa_aggregate_forward.argtypes = [pointer] * 4 + [integer] * 9
    library.rsa_aggregate_backward.argtypes = [pointer] * 8 + [integer] * 9
    library.rsa_filter_input_grad.argtypes = [pointer] * 3 + [integer] * 10
    library.rsa_official_products.argtypes = [pointer] * 6 + [ctypes.c_int64] + [integer] * 6
    return library


def library() -> ctypes.CDLL | None:
    """The compiled kernel, building it on first call; None (with one warning) if it fails."""
    global _library, _failed
    if _library is None and not _failed and sys.platform != "win32":
        try:
            _library = _build()
        except (OSError, RuntimeError) as error:
            _failed = True
            warnings.warn(
                f"rsanet: fused CPU kernel unavailable, using PyTorch operators ({error})",
                RuntimeWarning,
                stacklevel=2,
            )
    return _library


def available(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels can compute on these tensors (all float32 on the CPU)."""
    return (
        enabled()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and library() is not None
    )


def _pointer(tensor: torch.Tensor | None) -> int | None:
    if tensor is None:
        return None
    if not tensor.is_contiguous():
        raise ValueError("the fused kernel needs contiguous tensors")
    return tensor.data_ptr()


def _dimensions(padded: torch.Tensor, kernel_size: tuple[int, int, int], heads: int):
    _, tp, hp, wp, dv = padded.shape
    kt, kh, kw = kernel_size
    return (tp - kt + 1, hp - kh + 1, wp - kw + 1, kt, kh, kw, heads, dv)


def aggregate(
    khat: torch.Tensor,
    padded: torch.Tensor,
    kernel_size: tuple[int, int, int],
    correlation: torch.Tensor | None,
) -> torch.Tensor:
    """khat (P, nh, M) and the padded values of one chunk (1, T+kt-1, H+kh-1, W+kw-1, dv) ->
    A = khat Pv (P, nh, dv); writes A Pv^T into ``correlation`` (P, nh, M) unless None."""
    heads, dv = khat.shape[1], padded.shape[-1]
    aggregated = khat.new_empty(khat.shape[0], heads, dv)
    library().rsa_aggregate_forward(
        _pointer(khat),
        _pointer(padded),
        _pointer(aggregated),
        _pointer(correlation),
        *_dimensions(padded, kernel_size, heads),
        torch.get_num_threads(),
    )
    return aggregated


def aggregate_backward(
    khat: torch.Tensor,
    grad_correlation: torch.Tensor | None,
    aggregated: torch.Tensor,
    grad_aggregated: torch.Tensor,
    padded: torch.Tensor,
    grad_khat: torch.Tensor,
    correlation: torch.Tensor | None,
    grad_padded: torch.Tensor,
    kernel_size: tuple[int, int, int],
) -> None:
    """Backward of :func:`aggregate` in place: ``grad_aggregated`` (in: the basic context's
    part) gets A's whole gradient, ``grad_khat`` and ``correlation`` are written, the values'
    gradient is added onto ``grad_padded``; see ``neighbourhood.cpp``."""
    library().rsa_aggregate_backward(
        _pointer(khat),
        _pointer(grad_correlation),
        _pointer(aggregated),
        _pointer(grad_aggregated),
        _pointer(padded),
        _pointer(grad_khat),
        _pointer(correlation),
        _pointer(grad_padded),
        *_dimensions(padded, kernel_size, khat.shape[1]),
        torch.get_num_threads(),
    )


def official_products(
    queries: torch.Tensor,
    key_summary: torch.Tensor | None,
    basic: torch.Tensor | None,
    filtered: torch.Tensor,
    mixing: torch.Tensor | None,
) -> torch.Tensor:
    """The authors' order's per-position products (no autograd): queries (P, nh, dk), K_H1
    (P, dk, D) or None (the basic kernel alone: D = dk), P1 (dk, D) or None, filtered values
    (P, dv, D) = F or (P, dv, D + dv) = [F | V_G] and I (dv, dv) or None -> (P, dv, nh), with
    kernel = q (K_H1 + P1), context = (V_G + I)^T F and y = context kernel^T."""
    positions, heads, keys = queries.shape
    channels, width = filtered.shape[1:]
    latent = key_summary.shape[-1] if key_summary is not None else keys
    out = queries.new_empty(positions, channels, heads)
    library().rsa_official_products(
        _pointer(queries),
        _pointer(key_summary),
        _pointer(basic),
        _pointer(filtered),
        _pointer(mixing),
        _pointer(out),
        positions,
        heads,
        keys,
        channels,
        latent,
        width,
        torch.get_num_threads(),
    )
    return out


def filter_input_grad(
    grad: torch.Tensor, weight: torch.Tensor, kernel_size: tuple[int, int, int]
) -> torch.Tensor:
    """Input gradient of ``rsanet.layers.rsa.neighbourhood_filter``: the output's gradient
    (N, T, H, W, C, F) and the filters (C*F, kt, kh, kw) -> (N, T, H, W, C); C a multiple
    of 8 (see :func:`filter_applies`)."""
    n, t, h, w, c, f = grad.shape
    kt, kh, kw = kernel_size
    filters = weight.reshape(c // 8, 8, f, kt * kh * kw).permute(0, 3, 2, 1).contiguous()
    grad_input = grad.new_empty(n, t, h, w, c)
    library().rsa_filter_input_grad(
        _pointer(grad),
        _pointer(filters),
        _pointer(grad_input),
        n,
        t,
        h,
        w,
        c,
        f,
        kt,
        kh,
        kw,
        torch.get_num_threads(),
    )
    return grad_input


def filter_applies(x: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Whether :func:`filter_input_grad` can take the gradient for channels-last input x
    (and the other tensors of the computation)."""
    return x.shape[-1] % 8 == 0 and available(x, *tensors)
