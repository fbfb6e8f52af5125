"""Batched matrix products on each rank's own GPU (CuPy, else PyTorch, else NumPy on the CPU).

    mpiexec -n 4 mpibatch run examples/gpu_matmul.py --gpus auto --reps 8 --out gpu.h5
    mpiexec -n 8 mpibatch run examples/gpu_matmul.py --gpus 4 --ranks-per-gpu 2 --out gpu.h5
    mpibatch info gpu.h5

With ``--gpus auto`` local rank k gets GPU k mod G; mpibatch sets ``CUDA_VISIBLE_DEVICES`` to
that one GPU before this file is imported, so here it is device 0. ``ctx.device`` says which
physical GPU it is (``.index``, ``.uuid``, ``.name``), or is None on a CPU rank (no GPU on the
node, or ``--gpus none``): then NumPy runs the same computation.

Each task seeds its GPU generator from its own numpy stream, so a task's random matrices do not
depend on the rank or on -np (results are the same for a given backend and GPU model).
Results go back as host values: floats and numpy arrays (``mpibatch.devices.to_host``).
"""

import numpy as np

from mpibatch.devices import to_host

BATCH = 16  # matrix products per task
NUMPY, CUPY, TORCH = 0, 1, 2  # the "backend" result


def grid():  # optional; --grid n=... overrides it
    return {"n": [64, 128, 256]}


def _gpu_library(ctx):
    """(code, module) of the GPU library to use, or (NUMPY, None) on a CPU rank."""
    if ctx is None or getattr(ctx, "device", None) is None:
        return NUMPY, None
    try:
        import cupy

        if cupy.cuda.is_available():
            return CUPY, cupy
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return TORCH, torch
    except ImportError:
        pass
    return NUMPY, None


def _products_cupy(cupy, n, seed):
    g = cupy.random.default_rng(seed)
    a = g.standard_normal((BATCH, n, n), dtype=cupy.float32)
    b = g.standard_normal((BATCH, n, n), dtype=cupy.float32)
    return cupy.linalg.norm(a @ b, axis=(1, 2))


def _products_torch(torch, n, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn((BATCH, n, n), generator=g, device="cuda", dtype=torch.float32)
    b = torch.randn((BATCH, n, n), generator=g, device="cuda", dtype=torch.float32)
    return torch.linalg.matrix_norm(a @ b)


def _products_numpy(n, seed):
    g = np.random.default_rng(seed)
    a = g.standard_normal((BATCH, n, n), dtype=np.float32)
    b = g.standard_normal((BATCH, n, n), dtype=np.float32)
    return np.linalg.norm(a @ b, axis=(1, 2))


def task(params, rng, ctx=None):
    n = int(params["n"])
    seed = int(rng.integers(2**63))  # the GPU generator's seed, drawn from the task's stream
    code, lib = _gpu_library(ctx)
    if code == CUPY:
        norms = _products_cupy(lib, n, seed)
    elif code == TORCH:
        norms = _products_torch(lib, n, seed)
    else:
        norms = _products_numpy(n, seed)
    norms = np.asarray(to_host(norms), dtype=np.float64)  # device -> host, then numpy
    return {"fro": float(np.sqrt(np.sum(norms**2))), "norms": norms, "backend": code}
