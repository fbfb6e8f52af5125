"""A real single-node Slurm (22.05, Debian 12) for tests, started from nothing.

``Cluster().start()`` installs the packages if missing (apt, root only), starts munge, writes
a slurm.conf into a fresh temp dir (free ports, so clusters of concurrent sessions on one
host do not meet), starts slurmctld and slurmd and waits for the node to be idle.
``Cluster.env`` is the environment for clients (sbatch, squeue, ...) and thus for jobs.

Every process the cluster starts (daemons, step daemons, jobs submitted with ``env``)
carries ``MPIBATCH_SLURM_OWNER=<pid>:<start time>:<id>`` in its environment: ``stop()``
kills what is left with its own tag, ``start()`` first kills what is left from owners that
are gone (a crashed run) and removes their temp dirs.  Nothing else is touched.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
SBIN = Path("/usr/sbin")
DIR_PREFIX = "mpibatch-slurm-"
OWNER_VAR = "MPIBATCH_SLURM_OWNER"
# Inherited variables that would make clients or jobs talk to another cluster or MPI job.
_STRIP = re.compile(r"^(SLURM_|SBATCH_|SRUN_|SALLOC_|SQUEUE_|SCANCEL_|PMI_|PMIX_)")
TERMINAL = frozenset(
    "BOOT_FAIL CANCELLED COMPLETED DEADLINE FAILED NODE_FAIL OUT_OF_MEMORY PREEMPTED "
    "TIMEOUT".split()
)


class ClusterError(RuntimeError):
    """Slurm did not do what was asked (message carries output and daemon log tails)."""


def _run(cmd, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with text capture and a mandatory timeout."""
    kw.setdefault("capture_output", True)
    return subprocess.run([str(c) for c in cmd], text=True, timeout=timeout, **kw)


def _tail(text: str | None, n: int = 20) -> str:
    return "\n".join((text or "").strip().splitlines()[-n:])


# ----------------------------------------------------------------------------- install


def missing_packages() -> list[str]:
    """Those of PACKAGES that dpkg does not list as installed."""
    if shutil.which("dpkg-query") is None:
        return list(PACKAGES)
    r = _run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *PACKAGES])
    ok = {ln.split()[0] for ln in r.stdout.splitlines() if ln.split()[1:2] == ["ii"]}
    return [p for p in PACKAGES if p not in ok]


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = "DPkg::Lock::Timeout=120"  # wait for a concurrent apt instead of failing
    return _run(["apt-get", "-o", lock, *args], timeout=timeout, env=env)


def install() -> str | None:
    """Install missing packages (apt-get update only if the first try fails); None if ok."""
    missing = missing_packages()
    if not missing:
        return None
    if os.geteuid() != 0:
        return f"Slurm packages missing ({' '.join(missing)}) and not root to install them"
    if shutil.which("apt-get") is None:
        return f"Slurm packages missing ({' '.join(missing)}) and no apt-get"
    cmd = ("install", "-y", "--no-install-recommends", *missing)
    try:
        r = _apt(*cmd, timeout=600)
        if r.returncode != 0:
            u = _apt("update", timeout=600)
            if u.returncode != 0:
                return f"apt-get update failed (no package access?): {_tail(u.stderr, 5)}"
            r = _apt(*cmd, timeout=600)
    except subprocess.TimeoutExpired as exc:
        return f"apt-get timed out (no package access?): {' '.join(exc.cmd)}"
    still = missing_packages()
    if still:
        return f"apt-get install {' '.join(still)} failed: {_tail(r.stdout + r.stderr, 8)}"
    return None


@functools.cache
def why_unavailable() -> str | None:
    """Why a Slurm cluster cannot be stood up here (installing if needed), or None."""
    if not sys.platform.startswith("linux"):
        return f"Slurm test cluster needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return "Slurm test cluster needs root (slurmd, munged, apt-get)"
    reason = install()
    if reason:
        return reason
    need = [SBIN / "munged", SBIN / "slurmctld", SBIN / "slurmd"]
    need += [Path("/usr/bin") / c for c in ("munge", "sbatch", "sinfo", "scontrol")]
    absent = [str(p) for p in need if not p.exists()]
    return f"installed but missing: {' '.join(absent)}" if absent else None


# ------------------------------------------------------------------------------- munge


def start_munge(timeout: float = 15) -> None:
    """Start munged as user munge (no systemd here) unless one already answers."""
    if _run(["munge", "-n"], timeout=10).returncode == 0:
        return
    _run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"])
    if not Path("/etc/munge/munge.key").exists():
        _run(["runuser", "-u", "munge", "--", SBIN / "mungekey", "--create"])
    # --force: a munged that died leaves a socket behind that would stop a new one.
    r = _run(["runuser", "-u", "munge", "--", SBIN / "munged", "--force"])
    deadline = time.monotonic() + timeout
    while _run(["munge", "-n"], timeout=10).returncode != 0:
        if time.monotonic() > deadline:
            raise ClusterError(f"munged did not come up: {r.stdout}{r.stderr}")
        time.sleep(0.1)


# ----------------------------------------------------------- processes we started


def _start_time(pid: int) -> str | None:
    """Kernel start time of pid (field 22 of /proc/pid/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in "ZX" else fields[19]


def _alive(pid: int) -> bool:
    return _start_time(pid) is not None


def _owner_alive(tag: str) -> bool:
    pid, start = tag.split(":")[:2]
    return pid.isdigit() and _start_time(int(pid)) == start


def _tagged() -> dict[int, str]:
    """pid -> owner tag of every process carrying OWNER_VAR in its environment."""
    found = {}
    key = OWNER_VAR.encode() + b"="
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        for item in env.split(b"\0"):
            if item.startswith(key):
                found[int(d.name)] = item[len(key) :].decode(errors="replace")
    return found


def _kill_and_wait(pids, timeout: float = 10, sigs=(signal.SIGTERM, signal.SIGKILL)) -> None:
    """Send each of sigs in turn, waiting up to timeout for the pids to be gone."""
    for sig in sigs:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def reap_stale() -> list[int]:
    """Kill processes and remove temp dirs left by clusters whose owner process is gone."""
    stale = [pid for pid, tag in _tagged().items() if not _owner_alive(tag)]
    _kill_and_wait(stale, 5, sigs=(signal.SIGKILL,))  # orphans: slurmstepd ignores SIGTERM
    for d in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        owner = d / "owner"
        if owner.exists() and not _owner_alive(owner.read_text().strip()):
            shutil.rmtree(d, ignore_errors=True)
    return stale


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _short_hostname() -> str:
    r = _run(["hostname", "-s"], timeout=10)
    return r.stdout.strip() or socket.gethostname().split(".")[0]


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 1024
    raise ClusterError("no MemTotal in /proc/meminfo")


# --------------------------------------------------------------------------- cluster


def write_conf(d: Path, host: str, mem_mb: int, cpus: int, ports: list[int]) -> Path:
    """slurm.conf for one node `host` with `cpus` CPUs (overriding the real count).

    Job ids start at ctld port x 1000, unique among live clusters: MPICH derives names of
    shared state from the PMI kvsname (job.step), and two "job 1" MPI steps at once on
    one host, one per cluster, read each other's messages (MPI_Init fails or hangs).
    """
    lines = f"""
        ClusterName=ci
        SlurmctldHost={host}
        SlurmctldPort={ports[0]}
        SlurmdPort={ports[1]}
        FirstJobId={ports[0] * 1000}
        SlurmUser=root
        AuthType=auth/munge
        StateSaveLocation={d}/state
        SlurmdSpoolDir={d}/spool
        SlurmctldPidFile={d}/slurmctld.pid
        SlurmdPidFile={d}/slurmd.pid
        SlurmctldLogFile={d}/log/slurmctld.log
        SlurmdLogFile={d}/log/slurmd.log
        MailProg=/bin/true
        SchedulerType=sched/backfill
        SchedulerParameters=batch_sched_delay=0
        SelectType=select/cons_tres
        SelectTypeParameters=CR_Core
        ProctrackType=proctrack/pgid
        TaskPlugin=task/none
        JobAcctGatherType=jobacct_gather/none
        AccountingStorageType=accounting_storage/none
        MpiDefault=pmi2
        ReturnToService=2
        MinJobAge=5
        KillWait=5
        SlurmdParameters=config_overrides
        NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
        PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
    """
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = d / "slurm.conf"
    conf.write_text("\n".join(ln.strip() for ln in lines.strip().splitlines()) + "\n")
    return conf


def _parse_record(line: str) -> dict[str, str]:
    """One `scontrol show -o` line -> {key: value} (values may contain spaces)."""
    return dict(re.findall(r"(\S+?)=(.*?)(?= \S+?=|$)", line.strip()))


class Cluster:
    """One single-node Slurm cluster with CPUS CPUs; `env` is for clients and jobs."""

    def __init__(self, cpus: int = 4, base: str | Path | None = None):
        self.cpus = cpus
        self.base = base
        self.dir: Path | None = None
        self.env: dict[str, str] = {}
        self.host = ""
        self.startup_s: float | None = None
        self._pids: dict[str, int] = {}
        st = _start_time(os.getpid())
        self.tag = f"{os.getpid()}:{st}:{uuid.uuid4().hex[:8]}"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30) -> Cluster:
        """Install if needed, start munge, slurmctld and slurmd; wait for an idle node."""
        if self.dir is not None:
            return self  # already started: idempotent
        t0 = time.monotonic()
        reason = why_unavailable()
        if reason:
            raise ClusterError(reason)
        reap_stale()
        start_munge()
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=self.base))
        (self.dir / "owner").write_text(self.tag + "\n")
        self.host = _short_hostname()
        conf = write_conf(self.dir, self.host, _mem_mb(), self.cpus, _free_ports(2))
        self.env = self._client_env(conf)
        try:
            for daemon in ("slurmctld", "slurmd"):
                self._start_daemon(daemon)
            self._wait_idle(timeout)
        except BaseException:
            self.stop(keep_dir=True)
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _client_env(self, conf: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not _STRIP.match(k)}
        # The venv first, so that python, mpiexec and mpibatch in jobs are the venv's.
        path = [str(Path(sys.executable).parent), "/usr/bin", "/usr/sbin", "/bin"]
        path += env.get("PATH", "").split(os.pathsep)
        env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in path if p))
        env["SLURM_CONF"] = str(conf)
        env[OWNER_VAR] = self.tag
        return env

    def _start_daemon(self, name: str) -> None:
        assert self.dir is not None
        with open(self.dir / "log" / f"{name}.stderr", "w") as err:
            r = _run(
                [SBIN / name],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                capture_output=False,
                cwd=self.dir,
            )
        pidfile = self.dir / f"{name}.pid"
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():
            if r.returncode != 0 or time.monotonic() > deadline:
                raise ClusterError(f"{name} did not start (rc {r.returncode})\n{self.logs()}")
            time.sleep(0.05)
        self._pids[name] = int(pidfile.read_text().split()[0])

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            r = _run(["sinfo", "-h", "-o", "%t"], env=self.env, timeout=10)
            state = r.stdout.strip() or r.stderr.strip()
            if state == "idle":
                return
            dead = [n for n, p in self._pids.items() if not _alive(p)]
            if dead or state.startswith(("drain", "drng", "fail")):
                break
            time.sleep(0.1)
        else:
            dead = []
        raise ClusterError(
            f"node not idle after start (sinfo: {state!r}, dead: {dead or 'none'})\n{self.logs()}"
        )

    def stop(self, keep_dir: bool = False, timeout: float = 15) -> None:
        """Cancel jobs, SIGTERM both daemons (pid files), then kill leftovers of this cluster."""
        if self.dir is None:
            return
        if all(_alive(p) for p in self._pids.values()) and len(self._pids) == 2:
            self._cancel_all(timeout=10)
        pids = dict(self._pids)
        for name in ("slurmctld", "slurmd"):
            pidfile = self.dir / f"{name}.pid"
            if pidfile.exists() and pidfile.read_text().strip():
                pids[name] = int(pidfile.read_text().split()[0])
        _kill_and_wait([p for p in pids.values() if _alive(p)], timeout)
        mine = [pid for pid, tag in _tagged().items() if tag == self.tag]
        _kill_and_wait(mine, 5, sigs=(signal.SIGKILL,))
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir, self._pids = None, {}

    def _cancel_all(self, timeout: float) -> None:
        """Cancel every job and wait (up to timeout) for the queue to be empty.

        SIGTERM to the daemons while a job is still running or completing made them take
        15 s or more to exit; with an empty queue they are gone in about 0.1 s.
        """
        deadline = time.monotonic() + timeout
        try:
            self.scancel("--user", "root", check=False, timeout=timeout)
            while self.squeue("-h", check=False, timeout=timeout).strip():
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
        except ClusterError:
            pass

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self, n: int = 25) -> str:
        """Tails of the daemon logs, for error messages."""
        if self.dir is None:
            return "(cluster not started)"
        out = []
        for f in sorted((self.dir / "log").glob("*")):
            text = f.read_text(errors="replace") if f.exists() else ""
            if text.strip():
                out.append(f"--- {f} (last {n} lines)\n{_tail(text, n)}")
        return "\n".join(out) or "(daemon logs empty)"

    # ----------------------------------------------------------------- clients

    def client(self, name: str, *args, check: bool = True, timeout: float = 30) -> str:
        """Run a Slurm client command (sinfo, squeue, ...) in `env`; its stdout."""
        try:
            r = _run([name, *args], env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"timed out after {timeout}s: {name} {args}") from exc
        if check and r.returncode != 0:
            raise ClusterError(f"{name} {' '.join(map(str, args))} -> {r.returncode}: {r.stderr}")
        return r.stdout

    def squeue(self, *args, **kw) -> str:
        return self.client("squeue", *args, **kw)

    def scancel(self, *args, **kw) -> str:
        return self.client("scancel", *args, **kw)

    def scontrol(self, *args, **kw) -> str:
        return self.client("scontrol", *args, **kw)

    def sinfo(self, *args, **kw) -> str:
        return self.client("sinfo", *args, **kw)

    def sbatch(
        self, script, *args, wait=True, timeout=120, script_args=(), cwd=None, env=None
    ) -> tuple[str, int]:
        """Submit `script` with sbatch options `args`: (job id, sbatch's exit code).

        With wait, `sbatch --wait` returns the job's exit code (the highest over an array);
        on timeout the job is cancelled and ClusterError raised.  The job's working dir is
        `cwd` (default: the script's directory) unless `--chdir` is given; its environment
        is `env` (this cluster's) plus the `env` argument (`--export=ALL`).
        """
        cmd = ["sbatch", "--parsable", "--export=ALL", *(["--wait"] if wait else [])]
        cmd += [*args, script, *script_args]
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd or Path(script).resolve().parent,
            env={**self.env, **(env or {})},
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self._sbatch_timed_out(out.strip().split(";")[0], timeout, err)
        job = out.strip().splitlines()[0].split(";")[0] if out.strip() else ""
        if not job.isdigit():
            raise ClusterError(f"sbatch failed ({proc.returncode}): {err}{out}")
        return job, proc.returncode

    def _sbatch_timed_out(self, job: str, timeout: float, err: str) -> None:
        rec = (self.job_info(job) or [{}])[0] if job else {}
        state = f"{rec.get('JobState')}, reason {rec.get('Reason')}"
        if job:
            self.scancel(job, check=False)
        raise ClusterError(
            f"job {job or '?'} not done after {timeout}s ({state})\n{err}\n{self.logs()}"
        )

    # ------------------------------------------------------------------ jobs

    def job_info(self, job_id) -> list[dict[str, str]]:
        """`scontrol show job -o` records (one per array element); [] once the job is gone."""
        out = self.scontrol("show", "job", "-o", str(job_id), check=False)
        return [_parse_record(ln) for ln in out.splitlines() if ln.strip()]

    def job_state(self, job_id) -> str | None:
        """JobState of job_id (use "J_T" for array element T), None once purged (MinJobAge)."""
        recs = self.job_info(job_id)
        return recs[0].get("JobState") if recs else None

    def wait_state(self, job_id, states, timeout: float = 60, poll: float = 0.2) -> str | None:
        """Poll until job_state is in states (None in states: "gone"); the state reached."""
        states = {states} if isinstance(states, str) or states is None else set(states)
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(job_id)
            if state in states:
                return state
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"job {job_id} is {state}, not in {sorted(map(str, states))}"
                    f" after {timeout}s\n{self.logs()}"
                )
            time.sleep(poll)
