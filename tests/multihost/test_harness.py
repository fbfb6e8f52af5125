"""The pretend cluster itself: separate hostnames and addresses, real TCP between hosts, and
nothing left behind (namespaces, /etc/netns, /run) however a run ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import cluster as harness
from .cluster import Cluster

SERVE = """
import socket
s = socket.create_server(("0.0.0.0", 5999))
c, _ = s.accept()
c.sendall(socket.gethostname().encode())
"""
ASK = """
import socket, time
for _ in range(300):
    try:
        c = socket.create_connection(("node2", 5999))
        break
    except OSError:
        time.sleep(0.1)
print(c.recv(99).decode())
"""


def _leftovers(prefix: str) -> list[str]:
    names = [n for n in harness._netns() if n.startswith(prefix + "-")]
    files = (
        [str(p) for p in Path("/etc/netns").glob(prefix + "-*")]
        if Path("/etc/netns").exists()
        else []
    )
    return names + files + ([f"/run/{prefix}"] if Path("/run", prefix).exists() else [])


@pytest.fixture(autouse=True)
def _root_only():
    why = harness.available()
    if why:
        pytest.skip(f"no pretend cluster here: {why}")


def test_hosts_have_their_own_names_and_addresses_and_reach_each_other():
    with Cluster(hosts=2, slots=1) as c:
        for host in ("head", "node1", "node2"):
            r = c.run(["hostname"], host=host, timeout=30)
            assert r.stdout.strip() == host
        r = c.run(["ip", "-4", "-o", "addr", "show", "eth0"], host="node2", timeout=30)
        assert "10.77.0.3/24" in r.stdout
        # real TCP from node1 to node2, by name (from node1's own /etc/hosts)
        server = c.popen([sys.executable, "-c", SERVE], host="node2")
        r = c.run([sys.executable, "-c", ASK], host="node1", timeout=60)
        c.wait(server, timeout=60)
        assert r.stdout.strip() == "node2", r.stderr
        # the root namespace got nothing: no interface of the cluster is in it
        assert (
            "10.77.0."
            not in subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
        )
    assert _leftovers(c.prefix) == []


def test_an_error_inside_leaves_nothing_behind_and_kills_what_ran():
    with pytest.raises(RuntimeError, match="boom"):
        with Cluster(hosts=1, slots=1) as c:
            sleeper = c.popen(["sleep", "300"], host="node1")
            raise RuntimeError("boom")
    assert sleeper.wait(timeout=30) != 0  # killed, not left running
    assert _leftovers(c.prefix) == []


def test_a_hang_is_a_timeout_error_and_is_killed():
    with Cluster(hosts=1, slots=1) as c:
        with pytest.raises(TimeoutError, match="a hang"):
            c.run(["sleep", "300"], host="node1", timeout=2)
        assert (
            subprocess.run(
                ["ip", "netns", "pids", c.ns("node1")], capture_output=True, text=True
            ).stdout
            == ""
        )
    assert _leftovers(c.prefix) == []


def test_the_ssh_stand_in_refuses_an_unknown_host_and_takes_ssh_options():
    with Cluster(hosts=1, slots=1) as c:
        r = c.run([c.standin, "-x", "-o", "BatchMode=yes", "root@node1", "hostname"], timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == "node1"
        r = c.run([c.standin, "elsewhere", "hostname"], timeout=30)
        assert r.returncode == 255 and "no pretend host 'elsewhere'" in r.stderr


def test_sweep_removes_what_a_killed_run_left_but_not_a_live_run():
    live = Cluster(hosts=1, slots=1)
    dead = Cluster(hosts=1, slots=1)
    with live:
        dead.start()
        (dead.run_dir / "owner").write_text("999999999")  # its process is gone
        swept = harness.sweep()
        assert set(swept) >= {dead.ns("node1"), dead.ns("head"), dead.ns("switch")}
        assert _leftovers(dead.prefix) == []
        assert _leftovers(live.prefix) != []  # a run still going is left alone
    assert _leftovers(live.prefix) == []
    assert os.path.exists("/run/lock")
