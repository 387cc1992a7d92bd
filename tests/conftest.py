"""Settings shared by the whole test suite."""

import os

import pytest
import torch

if not torch.cuda.is_available():  # Triton's interpreter runs the GPU kernels on CPU tensors
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread is ~10x faster than
    two threads that spin-wait for a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
