"""SPMD use of the Python API: every rank calls mpibatch.run."""

import sys

import numpy as np

import mpibatch


def sim(params, rng, ctx):
    return {"x": rng.normal(params["mu"]), "local": ctx.local_rank}


if __name__ == "__main__":
    grid = mpibatch.Grid({"mu": [0.0, 10.0], **mpibatch.Grid.zip(a=[1, 2, 3], b=["u", "v", "w"])})
    summary = mpibatch.run(sim, grid, reps=4, seed=9, out=sys.argv[1], overwrite=True)
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    print(f"rank {rank} summary {type(summary).__name__}", flush=True)
    if rank == 0:
        res = mpibatch.open(sys.argv[1])
        assert res.results["x"].shape == (24,)
        assert np.isfinite(res.results["x"]).all()
        print("zipped", res.params["a"][:4].tolist(), res.params["b"][:4].tolist(), flush=True)
