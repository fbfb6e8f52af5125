"""Reports which GPU this rank was bound to (by the environment and by ctx.device)."""

import os


def task(params, rng, ctx):
    seen = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    index = ctx.device.index if ctx.device is not None else -1
    return {
        "visible": int(seen) if seen.isdigit() else (-2 if seen == "unset" else -3),
        "device": index,
        "local": ctx.local_rank,
    }
