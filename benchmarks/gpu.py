"""Tasks/s of examples/gpu_matmul.py: 1, 2 and 4 ranks sharing one GPU against one process.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/gpu.py [--n 128] [--tasks 256] [--gpu-tasks 2048] [--ranks 1,2,4]
                             [--seed 1] [--markdown]

Every row runs the tasks of ``examples/gpu_matmul.py`` at one grid point ``n`` (a batch of 16
float32 ``n x n`` products per task), task ``i`` drawing from
``Generator(PCG64(seed).jumped(i))``, and is timed as a whole command
(``time.perf_counter()`` around ``subprocess.run``: interpreter start-up, imports, CUDA context
creation and writing the output are all in). The rows:

1. one process: ``python benchmarks/gpu.py --one-process gpu|cpu``, a plain loop calling
   ``task(params, rng, ctx)``. GPU: bound to the first GPU. CPU: BLAS limited to one thread,
   as each mpibatch rank is by default.
2. ``mpiexec -n K mpibatch run examples/gpu_matmul.py --grid n=N --reps T --gpus auto`` with
   ``CUDA_VISIBLE_DEVICES`` set to the first GPU, so the K ranks share that one GPU
   (time-sliced; no MPS daemon). The CPU rows pass ``--gpus none`` and run NumPy.

``results``: each row's ``fro`` column compared bit for bit with its one-process row, and the
backend the file records (numpy, cupy or torch). On a machine without a GPU only the CPU rows
run. GPU rows need ``mpibatch run --gpus``; without it they say so instead of a time.
"""

import argparse
import importlib.util
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from _bench import HERE, begin, format_table, mpibatch_run, note, run_command, run_help_has

from mpibatch.devices import Device, bound, visible_gpus

EXAMPLE = HERE.parent / "examples" / "gpu_matmul.py"
BACKENDS = {0: "numpy", 1: "cupy", 2: "torch"}


@dataclass
class Row:
    name: str
    ranks: int
    tasks: int
    seconds: float | None  # None when the command failed
    results: str
    baseline: bool = False


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=128, help="matrix size (16 products per task)")
    p.add_argument("--tasks", type=int, default=256, help="tasks in each CPU row")
    p.add_argument("--gpu-tasks", type=int, default=2048, help="tasks in each GPU row")
    p.add_argument("--ranks", default="1,2,4", help="rank counts, comma-separated")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--one-process", choices=["cpu", "gpu"], help=argparse.SUPPRESS)
    p.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.ranks = [int(k) for k in args.ranks.split(",")]
    if min(args.n, args.tasks, args.gpu_tasks, *args.ranks) < 1:
        p.error("--n, --tasks, --gpu-tasks and --ranks must be positive")
    return args


def one_process(args) -> None:
    """The baseline: every task in a loop in this process; saves (fro, backend) to --save."""
    from threadpoolctl import threadpool_limits

    from mpibatch.streams import task_generator

    spec = importlib.util.spec_from_file_location("gpu_matmul", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    device = visible_gpus()[0] if args.one_process == "gpu" else None
    ntasks = args.gpu_tasks if device else args.tasks
    fro, backend = np.empty(ntasks), np.empty(ntasks, np.int64)
    with bound(device), threadpool_limits(1):
        for i in range(ntasks):
            ctx = types.SimpleNamespace(task_id=i, device=device)
            out = example.task({"n": args.n, "rep": i}, task_generator(args.seed, i), ctx)
            fro[i], backend[i] = out["fro"], out["backend"]
    np.savez(args.save, fro=fro, backend=backend)


def describe(fro: np.ndarray, backend: np.ndarray, ref: np.ndarray | None) -> str:
    names = "+".join(sorted({BACKENDS.get(int(b), str(b)) for b in np.unique(backend)}))
    if ref is None:
        return names
    same = fro.shape == ref.shape and np.array_equal(fro, ref)
    return f"{names}, {'equal' if same else 'DIFFERENT'}"


def time_one_process(args, kind: str, tmp: Path) -> tuple[Row, np.ndarray | None]:
    save = tmp / f"one_{kind}.npz"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one-process", kind]
    cmd += ["--n", str(args.n), "--tasks", str(args.tasks), "--gpu-tasks", str(args.gpu_tasks)]
    cmd += ["--seed", str(args.seed), "--save", str(save)]
    ntasks = args.gpu_tasks if kind == "gpu" else args.tasks
    seconds, error = run_command(cmd, args.timeout)
    if seconds is None:
        return Row(f"one process, {kind.upper()}", 1, ntasks, None, error, True), None
    data = np.load(save)
    results = describe(data["fro"], data["backend"], None)
    return Row(f"one process, {kind.upper()}", 1, ntasks, seconds, results, True), data["fro"]


def time_mpibatch(args, nranks: int, device: Device | None, ref, tmp: Path, flag: bool) -> Row:
    ntasks = args.gpu_tasks if device else args.tasks
    name = f"mpibatch -n {nranks}" + (", sharing 1 GPU" if device else ", CPU")
    if device and not flag:
        return Row(name, nranks, ntasks, None, "failed: mpibatch run has no --gpus flag yet")
    out = tmp / f"mpibatch_{nranks}_{'gpu' if device else 'cpu'}.h5"
    cmd = mpibatch_run(nranks, EXAMPLE, ntasks, args.seed, out) + ["--grid", f"n={args.n}"]
    cmd += (["--gpus", "auto" if device else "none"]) if flag else []
    env = {}
    with bound(device, env):  # only the first GPU is visible to the command
        seconds, error = run_command(cmd, args.timeout, env=env)
    if seconds is None:
        return Row(name, nranks, ntasks, None, error)
    with h5py.File(out, "r") as f:
        results = describe(f["results/fro"][()], f["results/backend"][()], ref)
    return Row(name, nranks, ntasks, seconds, results)


def measure(args, device: Device | None, tmp: Path, flag: bool) -> list[Row]:
    kind = "gpu" if device else "cpu"
    base, ref = time_one_process(args, kind, tmp)
    rows = [base]
    for nranks in args.ranks:
        rows.append(time_mpibatch(args, nranks, device, ref, tmp, flag))
        print(f"  {rows[-1].name}: done", file=sys.stderr, flush=True)
    return rows


HEADER = ["row", "ranks", "tasks", "seconds", "tasks/s", "x one process", "results"]


def cells(rows: list[Row]) -> list[list[str]]:
    base = next((r for r in rows if r.baseline and r.seconds), None)
    out = []
    for r in rows:
        rate = r.tasks / r.seconds if r.seconds else None
        speedup = rate / (base.tasks / base.seconds) if rate and base else None
        out.append(
            [
                r.name,
                str(r.ranks),
                str(r.tasks),
                f"{r.seconds:.2f}" if r.seconds else "-",
                f"{rate:,.1f}" if rate else "-",
                f"{speedup:.2f}" if speedup else "-",
                r.results,
            ]
        )
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.one_process:
        one_process(args)
        return
    gpus, flag = visible_gpus(), run_help_has("--gpus")
    begin(f"gpu: examples/gpu_matmul.py, n={args.n} (16 products per task), seed={args.seed}")
    if gpus:
        print(f"GPU: {gpus[0].name} ({gpus[0].uuid or gpus[0].index}); {len(gpus)} visible")
    else:
        print("no GPU here: only the CPU rows")
    with tempfile.TemporaryDirectory(prefix="mpibatch-gpu-") as tmpdir:
        tmp = Path(tmpdir)
        tables = [("GPU", measure(args, gpus[0], tmp, flag))] if gpus else []
        tables.append(("CPU", measure(args, None, tmp, flag)))
    for title, rows in tables:
        print(f"\n{title} rows:\n" + format_table(HEADER, cells(rows), args.markdown))
    print()
    print(
        note(
            "x one process = tasks/s / the one-process row's tasks/s; whole commands, start-up "
            "included; results: backend, fro compared bit for bit with the one-process row",
            args.markdown,
        )
    )


if __name__ == "__main__":
    main()
