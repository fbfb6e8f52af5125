"""A pretend cluster on this one machine: hosts as Linux network + UTS namespaces.

Each pretend host is a network namespace (its own ``lo`` and ``eth0``, address 10.77.0.N/24)
plus a persistent UTS namespace (its own hostname); all hang off one bridge that lives in a
namespace of its own, so the root namespace gets no interface, address or route and no
traffic leaves the machine. ``/etc/netns/<ns>/hosts`` names every host for that host's
processes. The launcher runs on a host of its own ("head", like a login node), and reaches
the others through an ssh stand-in script given to the launchers' own ssh hooks (Hydra's
``-launcher-exec``, Open MPI's ``plm_rsh_agent``): MPI sees separate nodes with their own
hostnames and real TCP between them. The project's shared/multihost/README.md says why
``UCX_TLS=tcp,self`` (MPICH) and ``--bind-to none`` (Open MPI) are needed.

Usage (needs root, ``ip`` and ``nsenter``; :func:`available` says whether they work)::

    with Cluster(hosts=2, slots=2) as c:
        r = c.mpiexec(["mpibatch", "run", "task.py", "--out", "x.h5"], n=4, timeout=120)

Every run uses a unique prefix (namespaces ``<prefix>-node1``..., ``/run/<prefix>``), so
parallel or aborted runs never collide; leaving the ``with`` block (also on an exception or
Ctrl-C) kills every process in its namespaces and removes them, their /etc/netns files and
/run/<prefix>. :func:`sweep` removes what a killed run (SIGKILL) left behind.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT_NAME = "mbc"  # every namespace and /run folder this harness makes starts with this
SUBNET = "10.77.0"
LOCK = Path("/run/lock/mbc-cluster.lock")  # serialises namespace setup/teardown across runs
OPENMPI_ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}

STANDIN = """#!/bin/sh
# ssh stand-in for the pretend cluster {prefix}: drop ssh's options, strip user@,
# run the rest through sh -c on that pretend host (its network + UTS namespaces).
while [ $# -gt 0 ]; do
  case "$1" in
    -[bcDEeFIiJLlmOoPpQRSWw]) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host="${{1#*@}}"
shift
if [ ! -e "/run/{prefix}/uts/$host" ]; then
  echo "ssh stand-in: no pretend host '$host' in {prefix}" >&2
  exit 255
fi
if [ -f "/run/{prefix}/env/$host" ]; then  # this host's own variables (Cluster.set_env)
  set -a
  . "/run/{prefix}/env/$host"
  set +a
fi
exec ip netns exec "{prefix}-$host" nsenter --uts="/run/{prefix}/uts/$host" -- sh -c "$*"
"""


def available() -> str | None:
    """None when pretend clusters can be made here, else why not (one line)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"needs '{tool}' (iproute2 / util-linux)"
    name = f"{ROOT_NAME}probe{os.getpid()}-x"
    with _locked():
        r = _sh(["ip", "netns", "add", name], check=False)
        _sh(["ip", "netns", "del", name], check=False)
        _unmount_netns_dir()
    if r.returncode != 0:
        return f"'ip netns add' fails here: {r.stderr.strip()}"
    return None


def _sh(cmd: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


@contextmanager
def _locked() -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _netns() -> list[str]:
    """Names in ``ip netns list`` (its lines may end in "(id: N)")."""
    out = _sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _mounted(path: str) -> bool:
    """Is something mounted on ``path``? (os.path.ismount misses bind mounts of one disk)"""
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == path for line in fh)


def _unmount_netns_dir() -> None:
    """/run/netns is a mount point that ``ip`` made: unmount it once no namespace is left."""
    for _ in range(8):  # ``ip`` may have stacked more than one mount there
        if _netns() or not _mounted("/run/netns"):
            break
        _sh(["umount", "/run/netns"], check=False)
    if Path("/run/netns").is_dir() and not _mounted("/run/netns"):
        try:
            Path("/run/netns").rmdir()  # only when empty
        except OSError:
            pass


class Cluster:
    """``hosts`` pretend hosts with ``slots`` ranks each, plus a launcher host "head"."""

    def __init__(self, hosts: int = 2, slots: int = 2, prefix: str | None = None) -> None:
        self.hosts = [f"node{i + 1}" for i in range(hosts)]
        self.slots = slots
        self.prefix = prefix or f"{ROOT_NAME}{os.getpid() % 100000}{uuid.uuid4().hex[:6]}"
        self.run_dir = Path("/run") / self.prefix
        self.standin = self.run_dir / "ssh"
        self._made: list[str] = []  # namespaces made so far (torn down even if setup fails)

    # -- names -----------------------------------------------------------------------------
    def ns(self, host: str) -> str:
        """The network namespace of ``host`` ("head", "node1", ...)."""
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        return f"{SUBNET}.{1 if host == 'head' else self.hosts.index(host) + 2}"

    def hostfile(self, flavor: str = "mpich", hosts: Sequence[str] | None = None) -> Path:
        """A host file for ``flavor`` ("mpich": HOST:N, "openmpi": HOST slots=N)."""
        fmt = "{h}:{n}" if flavor == "mpich" else "{h} slots={n}"
        lines = [fmt.format(h=h, n=self.slots) for h in (hosts or self.hosts)]
        path = self.run_dir / f"hosts.{flavor}"
        path.write_text("\n".join(lines) + "\n")
        return path

    def set_env(self, host: str, env: dict[str, str] | None) -> None:
        """Variables that processes launched on ``host`` get (None: none), like a node's own
        (e.g. ``CUDA_VISIBLE_DEVICES``). The launcher's own environment wins where Hydra
        forwards it: leave those variables out of the launcher's (``env={VAR: None}``)."""
        path = self.run_dir / "env" / host
        if env is None:
            path.unlink(missing_ok=True)
            return
        path.write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in env.items()))

    # -- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Make the switch, the hosts, their cables, names and hostnames, and the stand-in."""
        (self.run_dir / "uts").mkdir(parents=True)
        (self.run_dir / "env").mkdir()
        (self.run_dir / "owner").write_text(str(os.getpid()))
        self.standin.write_text(STANDIN.format(prefix=self.prefix))
        self.standin.chmod(0o755)
        everyone = ["head", *self.hosts]
        hosts_text = "127.0.0.1 localhost\n" + "".join(f"{self.address(h)} {h}\n" for h in everyone)
        switch = self.ns("switch")
        with _locked():
            self._add_ns(switch)
            _sh(["ip", "-n", switch, "link", "add", "br0", "type", "bridge"])
            _sh(["ip", "-n", switch, "link", "set", "br0", "up"])
            for host in everyone:
                self._add_host(host, switch, hosts_text)

    def _add_ns(self, name: str) -> None:
        self._made.append(name)
        _sh(["ip", "netns", "add", name])

    def _add_host(self, host: str, switch: str, hosts_text: str) -> None:
        ns, port = self.ns(host), f"p-{host}"
        self._add_ns(ns)
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts_text)
        _sh(["ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "eth0", "netns", ns])
        _sh(["ip", "-n", switch, "link", "set", port, "master", "br0", "up"])
        _sh(["ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0"])
        _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        _sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        uts = self.run_dir / "uts" / host
        uts.touch()
        _sh(["unshare", f"--uts={uts}", "hostname", host])

    def stop(self) -> None:
        """Kill what runs in the namespaces, remove them, their files and /run/<prefix>."""
        with _locked():
            for ns in self._made:
                _kill_in(ns)
            for uts in sorted((self.run_dir / "uts").glob("*")):
                _sh(["umount", str(uts)], check=False)
            for ns in self._made:
                _sh(["ip", "netns", "del", ns], check=False)
                shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
            self._made.clear()
            shutil.rmtree(self.run_dir, ignore_errors=True)
            if Path("/etc/netns").is_dir() and not any(Path("/etc/netns").iterdir()):
                Path("/etc/netns").rmdir()
            _unmount_netns_dir()

    # -- running ---------------------------------------------------------------------------
    def on(self, host: str, cmd: Sequence[str]) -> list[str]:
        """The command line that runs ``cmd`` on ``host``."""
        uts = self.run_dir / "uts" / host
        return ["ip", "netns", "exec", self.ns(host), "nsenter", f"--uts={uts}", "--", *cmd]

    def popen(
        self,
        cmd: Sequence[str | os.PathLike],
        host: str = "head",
        env: dict | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.Popen:
        """Start ``cmd`` on ``host`` in a session of its own (``ip netns exec`` and ``nsenter``
        exec, so its pid is ``cmd``'s: a signal to it reaches ``cmd``). ``env``: added to
        this process's environment; a value None removes that variable."""
        full = {**os.environ, **(env or {})}
        return subprocess.Popen(
            self.on(host, [str(c) for c in cmd]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in full.items() if v is not None},
            cwd=cwd,
            start_new_session=True,
        )

    def wait(self, proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
        """Wait for ``proc``; on time-out kill it and all it started, then raise TimeoutError."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException as exc:
            self.kill_all(proc)
            out, err = proc.communicate()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise  # Ctrl-C or another error: nothing left running, raised as it was
            raise TimeoutError(
                f"timed out after {timeout}s (a hang): {' '.join(proc.args)}\n{out}\n{err}"
            ) from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def run(
        self,
        cmd: Sequence[str | os.PathLike],
        host: str = "head",
        timeout: float = 120,
        env: dict | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` on ``host``; on time-out kill it and all it started, then raise."""
        return self.wait(self.popen(cmd, host, env, cwd), timeout)

    def kill_all(self, proc: subprocess.Popen | None = None) -> None:
        """SIGKILL ``proc``'s session and every process in this cluster's namespaces."""
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for ns in self._made:
            _kill_in(ns)

    def launcher(
        self,
        cmd: Sequence[str | os.PathLike],
        n: int | None = None,
        flavor: str = "mpich",
        mpiexec: str | os.PathLike = "mpiexec",
        hostfile: str | os.PathLike | None = None,
    ) -> list[str]:
        """The launcher command line for ``cmd`` on this cluster (run it on "head")."""
        hf = str(hostfile or self.hostfile(flavor))
        if flavor == "mpich":
            args = [str(mpiexec), "-launcher", "ssh", "-launcher-exec", str(self.standin)]
            args += ["-f", hf, "-genv", "UCX_TLS", "tcp,self"]
        else:
            args = [str(mpiexec), "--mca", "plm_rsh_agent", str(self.standin)]
            args += ["--hostfile", hf, "--bind-to", "none"]
        args += ["-n", str(n)] if n else []
        return args + [str(c) for c in cmd]

    def mpiexec(
        self,
        cmd: Sequence[str | os.PathLike],
        n: int | None = None,
        timeout: float = 180,
        flavor: str = "mpich",
        mpiexec: str | os.PathLike = "mpiexec",
        hostfile: str | os.PathLike | None = None,
        env: dict | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        """Launch ``cmd`` as ``n`` ranks over the hosts from "head" (``flavor``: mpich/openmpi).

        ``mpiexec`` is the launcher program (a path, since ``ip netns exec`` keeps PATH);
        Open MPI also gets the variables that let it run as root.
        """
        line = self.launcher(cmd, n, flavor, mpiexec, hostfile)
        return self.run(line, timeout=timeout, env=self.launch_env(flavor, env), cwd=cwd)

    def launch_env(self, flavor: str, env: dict | None = None) -> dict:
        """What the launcher needs added to this environment (``env`` too)."""
        return {**(OPENMPI_ROOT_ENV if flavor == "openmpi" else {}), **(env or {})}


def _kill_in(ns: str) -> None:
    """SIGKILL every process in network namespace ``ns`` (twice: forks may race the first)."""
    for _ in range(2):
        pids = _sh(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        if not pids:
            return
        time.sleep(0.2)


def _alive(prefix: str) -> bool:
    """Is the process that made cluster ``prefix`` still running?"""
    try:
        os.kill(int((Path("/run") / prefix / "owner").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def sweep() -> list[str]:
    """Remove what harness runs whose process is gone left behind (returns the namespaces)."""
    names = [n for n in _netns() if n.startswith(ROOT_NAME) and "-" in n]
    prefixes = {n.rsplit("-", 1)[0] for n in names}
    prefixes |= {p.name for p in Path("/run").glob(f"{ROOT_NAME}*") if p.is_dir()}
    gone = [p for p in sorted(prefixes) if not _alive(p)]
    for prefix in gone:
        c = Cluster(prefix=prefix)
        c._made = [n for n in names if n.rsplit("-", 1)[0] == prefix]
        c.stop()
    return [n for n in names if n.rsplit("-", 1)[0] in gone]
