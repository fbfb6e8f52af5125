"""One local GPU per rank: which GPUs a node has, which one a rank owns, and binding it.

No MPI here: the engine passes in each rank's position on its node (``_comm.local_rank``).

Which GPUs (``visible_gpus``), first source that is set wins:

1. ``CUDA_VISIBLE_DEVICES``: comma list of indices or UUIDs (``GPU-...``, ``MIG-...``).
   Empty, ``-1`` or ``NoDevFiles`` mean no GPU; as in CUDA, the list ends at the first
   invalid entry.
2. Slurm: ``SLURM_STEP_GPUS``, ``SLURM_JOB_GPUS``, ``GPU_DEVICE_ORDINAL`` (comma lists of
   indices; ``0-3`` ranges are accepted).
3. ``nvidia-smi -L`` (10 s time-out; no binary, a failure or a time-out mean no GPU); a GPU
   split into MIG instances counts as its instances (each one a device to bind).

UUID and name come from ``nvidia-smi -L`` when it runs (matched by UUID, else by index:
nvidia-smi numbers GPUs by PCI bus, as CUDA does on a node of one GPU model).

Which one a rank owns (``choose``), with ``request`` = ``--gpus`` and R = ``--ranks-per-gpu``:

- ``"none"`` (or 0): no GPU, the rank runs on the CPU (``None``).
- ``"auto"``: the G visible GPUs; on a node without one, ``None`` (CPU), not an error.
- an int N: the first N visible GPUs (G = N); fewer than N visible is an error.
- **local rank k is bound to GPU k mod G** (round-robin over the chosen list). With L ranks
  on the node each GPU serves ceil(L / G) or floor(L / G) of them.
- R caps the ranks sharing one GPU: L > G * R is an error naming the fix. R defaults to
  ceil(L / G), so without ``--ranks-per-gpu`` there is never an error: GPUs are shared evenly.

Binding (``bound``): ``CUDA_VISIBLE_DEVICES`` becomes exactly the chosen device (its UUID
when known, which is unambiguous whatever ``CUDA_DEVICE_ORDER`` says, else its index), and
``HIP_VISIBLE_DEVICES`` likewise if it was set. The task then sees one GPU, as ordinal 0.
A CPU rank (``None``) leaves the environment alone: the task decides. It must run before
CUDA is initialised in the process, i.e. before the task file is imported.

Seeding a GPU generator reproducibly from the task's numpy stream (invariant to ``-np``)::

    seed = int(rng.integers(2**63))
    g = cupy.random.default_rng(seed)                            # CuPy
    g = torch.Generator(device="cuda").manual_seed(seed)         # PyTorch
    key = jax.random.key(seed)                                   # JAX
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from ._say import plural
from .errors import UsageError

SMI_TIMEOUT = 10.0
SLURM_VARS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL")
NO_DEVICES = ("", "-1", "nodevfiles")  # CUDA_VISIBLE_DEVICES values meaning "no GPU"
_GPU_LINE = re.compile(r"^GPU (\d+): (.*?) \(UUID: (GPU-[^)\s]+)\)")
_MIG_LINE = re.compile(r"^\s+(MIG \S+)\s+Device\s+\d+: \(UUID: (MIG-[^)\s]+)\)")


@dataclass
class Device:
    """One GPU: ``index`` as the node numbers it, ``uuid`` and ``name`` when known."""

    index: int
    uuid: str | None = None
    name: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def env_value(self) -> str:
        """What ``CUDA_VISIBLE_DEVICES`` names it by: the UUID if known, else the index."""
        return self.uuid or str(self.index)


def parse_smi(text: str) -> list[Device]:
    """Devices in ``nvidia-smi -L`` output: GPUs, and MIG instances (with their GPU's index)."""
    found: list[Device] = []
    gpu: Device | None = None
    for line in text.splitlines():
        if m := _GPU_LINE.match(line):
            gpu = Device(int(m[1]), m[3], m[2].strip())
            found.append(gpu)
        elif (m := _MIG_LINE.match(line)) and gpu is not None:
            found.append(Device(gpu.index, m[2], f"{gpu.name} {m[1]}"))
    return found


def smi_devices(timeout: float | None = None) -> list[Device]:
    """``nvidia-smi -L`` parsed; [] if it is missing, fails or runs over ``timeout`` (10 s)."""
    timeout = SMI_TIMEOUT if timeout is None else timeout
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_smi(out.stdout) if out.returncode == 0 else []


def _cuda_entries(value: str) -> list[int | str]:
    """``CUDA_VISIBLE_DEVICES`` entries up to the first invalid one, duplicates dropped."""
    if value.strip().lower() in NO_DEVICES:
        return []
    entries: list[int | str] = []
    for raw in value.split(","):
        item = raw.strip()
        if item.isdigit():
            entry: int | str = int(item)
        elif item.startswith(("GPU-", "MIG-")):
            entry = item
        else:
            break  # CUDA ignores this entry and every later one ("-1", a typo)
        if entry in entries:
            break
        entries.append(entry)
    return entries


def _slurm_entries(value: str) -> list[int | str]:
    """A Slurm list of indices: ``0,2``, ``0-3``; [] if any item is not one."""
    indices: list[int | str] = []
    for item in value.split(","):
        lo, _, hi = item.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return []
        for i in range(int(lo), int(hi or lo) + 1):
            if i not in indices:
                indices.append(i)
    return indices


def _env_entries(env: MutableMapping[str, str]) -> list[int | str] | None:
    """The devices the environment names, or None if it names none (then ask nvidia-smi)."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return _cuda_entries(env["CUDA_VISIBLE_DEVICES"])
    for var in SLURM_VARS:
        value = env.get(var, "").strip()
        if value.lower() == "nodevfiles":
            return []
        if entries := _slurm_entries(value):
            return entries  # an unset, empty or unreadable variable passes to the next source
    return None


def _resolve(entry: int | str, known: list[Device], position: int) -> Device:
    """An entry as a Device, with UUID and name from ``known`` (nvidia-smi) when it matches."""
    if isinstance(entry, int):
        whole = [d for d in known if d.uuid is None or d.uuid.startswith("GPU-")]
        match = next((d for d in whole if d.index == entry), None)
        return Device(entry, match.uuid, match.name) if match else Device(entry)
    match = next((d for d in known if d.uuid and d.uuid.startswith(entry)), None)
    # A UUID nvidia-smi did not list: keep it (it binds exactly); its index is its CUDA ordinal.
    return Device(match.index, match.uuid, match.name) if match else Device(position, entry)


def _usable(known: list[Device]) -> list[Device]:
    """nvidia-smi's list with each MIG-enabled GPU replaced by its MIG instances."""
    parents = {d.index for d in known if d.uuid and d.uuid.startswith("MIG-")}
    return [d for d in known if d.index not in parents or (d.uuid or "").startswith("MIG-")]


def visible_gpus(env: MutableMapping[str, str] | None = None, smi: bool = True) -> list[Device]:
    """The GPUs this node lets the process use (see the module docstring for the sources)."""
    env = os.environ if env is None else env
    entries = _env_entries(env)
    if entries == []:
        return []
    known = smi_devices() if smi else []
    if entries is None:
        return _usable(known)
    return [_resolve(e, known, k) for k, e in enumerate(entries)]


def parse_request(request: str | int) -> str | int:
    """``--gpus`` as ``"auto"``, ``"none"`` or a count (0 is ``"none"``); else UsageError."""
    text = str(request).strip().lower()
    if text in ("auto", "none"):
        return text
    if isinstance(request, bool) or not text.isdigit():
        raise UsageError(
            f"--gpus: expected auto, none or a number of GPUs per node, got {request!r}; "
            "pass --gpus auto"
        )
    return int(text) or "none"


def _chosen(gpus: list[Device], request: str | int, host: str) -> list[Device]:
    """The GPUs a request selects: all for "auto", the first N for N (UsageError if fewer)."""
    if not isinstance(request, int):  # "auto"
        return list(gpus)
    if len(gpus) < request:
        seen = f"only {len(gpus)} GPU(s) are visible" if gpus else "no GPU is visible"
        raise UsageError(
            f"--gpus {request} but {seen} on {host}; pass --gpus {len(gpus) or 'none'}, "
            "or --gpus auto"
        )
    return list(gpus[:request])


def choose(
    local_rank: int,
    local_size: int,
    gpus: list[Device],
    request: str | int = "auto",
    ranks_per_gpu: int | None = None,
    *,
    host: str = "this node",
) -> Device | None:
    """The GPU local rank ``local_rank`` of ``local_size`` owns: GPU k mod G, or None (CPU)."""
    if not 0 <= local_rank < local_size:
        raise UsageError(
            f"local rank: expected 0 <= rank < {local_size}, got {local_rank}; "
            "pass the rank's position on its node"
        )
    request = parse_request(request)
    if isinstance(ranks_per_gpu, bool) or ranks_per_gpu is not None and ranks_per_gpu < 1:
        raise UsageError(
            f"--ranks-per-gpu: expected an integer >= 1, got {ranks_per_gpu!r}; pass "
            "--ranks-per-gpu 1 for one rank per GPU"
        )
    if request == "none":
        return None
    chosen = _chosen(gpus, request, host)
    if not chosen:
        return None
    g = len(chosen)
    cap = math.ceil(local_size / g) if ranks_per_gpu is None else ranks_per_gpu
    if local_size > g * cap:
        raise UsageError(
            f"{local_size} ranks on {host} but {g} GPU(s) x --ranks-per-gpu {cap} = {g * cap} "
            f"places; launch {plural(g * cap, 'rank')} per node, or pass --ranks-per-gpu "
            f"{math.ceil(local_size / g)}"
        )
    return chosen[local_rank % g]


@contextmanager
def bound(device: Device | None, env: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """Show the process only ``device`` (None: change nothing); restore the old values on exit."""
    if device is None:
        yield
        return
    names = ["CUDA_VISIBLE_DEVICES"] + ["HIP_VISIBLE_DEVICES"] * ("HIP_VISIBLE_DEVICES" in env)
    saved = {name: env.get(name) for name in names}
    try:
        for name in names:
            env[name] = device.env_value()
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                env.pop(name, None)
            else:
                env[name] = old


def to_host(value: object) -> object:
    """A CuPy/Numba/PyTorch/JAX array as a numpy array (a dict: each value); else ``value``.

    Duck-typed: none of those libraries is imported.
    """
    if isinstance(value, dict):
        return {k: to_host(v) for k, v in value.items()}
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        tensor = value.detach().cpu()
        try:
            return tensor.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            return tensor.float().numpy()
    if hasattr(value, "__cuda_array_interface__"):
        if hasattr(value, "get"):  # cupy.ndarray
            return value.get()
        if hasattr(value, "copy_to_host"):  # numba device array
            return value.copy_to_host()
    if type(value).__module__.startswith(("jax", "jaxlib")) and hasattr(value, "__array__"):
        return np.asarray(value)
    return value
