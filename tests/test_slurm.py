"""mpibatch.slurm without a real Slurm: scripts, golden files, stubs of sbatch/squeue/srun.

The templates in slurm/ and the renders in tests/golden/ are golden files; after a
deliberate change regenerate them with ``UPDATE_GOLDEN=1 pytest tests/test_slurm.py``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from mpibatch import slurm
from mpibatch.errors import ExitCode, UsageError
from mpibatch.slurm import EXAMPLE_ARGS, KINDS, SlurmOptions, render

ROOT = Path(__file__).resolve().parents[1]
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
Opt = SlurmOptions
GOLDEN = {  # tests/golden/<name>.sbatch: (kind, mpibatch command after "run", options)
    "cpu-2x64": (
        "cpu",
        "study.py --reps 1000 --out study.h5",
        Opt(nodes=2, ntasks_per_node=64, time="02:00:00"),
    ),
    "hybrid-pmix": (
        "hybrid",
        "fit.py --grid model=ridge,lasso --seed 7",
        Opt(ntasks_per_node=8, cpus_per_task=16, mpi="pmix", partition="big"),
    ),
    "gpu-4": ("gpu", "study.py --reps 1000 --seed 42", Opt(gpus_per_node=4, account="proj42")),
    "resume-mpiexec": (
        "resume",
        "long.py --reps 100000 --seed 1 --out 'long run.h5'",
        Opt(launcher="mpiexec", time="1-00:00:00", max_rounds=5, signal_lead=300, grace=120),
    ),
    "array-0-9": ("array", "study.py --seed 42 --out=sweep.h5", Opt(array="0-9%4", job_name="s")),
}
KEY_LINES = {  # text each render must contain; "|" separates the pieces
    "cpu": '#SBATCH --ntasks-per-node=4\n#SBATCH --cpus-per-task=1|--out "$OUT"',
    "hybrid": '#SBATCH --cpus-per-task=4|export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK"',
    "gpu": "#SBATCH --ntasks-per-node=1|#SBATCH --gpus-per-node=1|--gpus auto",
    "resume": "#SBATCH --signal=B:USR1@120\n#SBATCH --requeue|MAX_ROUNDS=10|GRACE=60"
    '|[ -f "$OUT" ] && RESUME=(--resume)|trap \'forward USR1\' USR1|kill -s "$1" "$pid"'
    '|wait "$pid"|scontrol requeue "$SLURM_JOB_ID"|--dependency=afterany:',
    "array": "#SBATCH --output=%x-%A_%a.out|#SBATCH --array=0-3|--tasks array|MaxArraySize"
    '|PART="$STEM.part$SLURM_ARRAY_TASK_ID.h5"|mpibatch merge study.part*.h5 -o study.h5'
    "|--dependency=afterok:",
}
COMMON = (
    "#!/bin/bash|EDIT HERE|#SBATCH --time=01:00:00|# module load python/3.11 openmpi/4.1"
    '|LAUNCH=(srun --mpi=pmi2 --cpus-per-task="$SLURM_CPUS_PER_TASK")|--mpi=pmix'
    '|srun --mpi=list|# LAUNCH=(mpiexec -n "$SLURM_NTASKS")'
    '|STUDY=(study.py --reps 1000 --seed 42)|--threads-per-rank "$SLURM_CPUS_PER_TASK"'
)


def stub(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def bash_syntax_ok(text: str, tmp_path: Path) -> None:
    path = tmp_path / "check.sbatch"
    path.write_text(text)
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def check_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: UPDATE_GOLDEN=1 pytest tests/test_slurm.py"
    assert path.read_text() == text, f"{path} differs from render(): UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_valid_script_with_its_key_lines(kind, tmp_path):
    text = render(kind, EXAMPLE_ARGS, SlurmOptions())
    for line in (COMMON + "|" + KEY_LINES[kind]).split("|"):
        assert line in text, line
    edit_end = text.index("# ===== nothing below needs editing")
    assert text.index("#SBATCH") < text.index("LAUNCH=") < text.index("STUDY=") < edit_end
    bash_syntax_ok(text, tmp_path)


def test_templates_in_slurm_folder_are_write_templates_output(tmp_path):
    paths = slurm.write_templates(tmp_path)  # render(kind, EXAMPLE_ARGS, SlurmOptions())
    assert sorted(p.name for p in paths) == sorted(f"{k}.sbatch" for k in KINDS)
    for path in paths:
        check_golden(ROOT / "slurm" / path.name, path.read_text())


@pytest.mark.parametrize("name", GOLDEN)
def test_non_default_renders_match_golden_files(name, tmp_path):
    kind, args, opts = GOLDEN[name]
    text = render(kind, ["run", *shlex.split(args)], opts)
    bash_syntax_ok(text, tmp_path)
    check_golden(ROOT / "tests" / "golden" / f"{name}.sbatch", text)


def test_options_land_in_the_header():
    text = render("resume", EXAMPLE_ARGS, SlurmOptions(partition="long", account="a1", time="4:00"))
    assert "#SBATCH --partition=long\n#SBATCH --account=a1\n" in text
    assert "##SBATCH --partition" not in text and "##SBATCH --account" not in text
    mpiexec = render("cpu", EXAMPLE_ARGS, SlurmOptions(launcher="mpiexec", mpi="pmix"))
    assert '\nLAUNCH=(mpiexec -n "$SLURM_NTASKS")' in mpiexec
    assert '# LAUNCH=(srun --mpi=pmix --cpus-per-task="$SLURM_CPUS_PER_TASK")' in mpiexec
    assert render("cpu", ["run", "x/study.py"]).count("OUT=study.h5") == 1


@pytest.mark.parametrize(
    "kind, args, opts, words",
    [
        ("mpi", EXAMPLE_ARGS, SlurmOptions(), "expected a kind among cpu"),
        ("cpu", ["study.py"], SlurmOptions(), "expected an mpibatch run command"),
        ("cpu", ["run", "--reps", "3"], SlurmOptions(), "expected a task file"),
        ("cpu", [*EXAMPLE_ARGS, "--threads-per-rank", "2"], SlurmOptions(), "--cpus-per-task"),
        ("gpu", [*EXAMPLE_ARGS, "--gpus=2"], SlurmOptions(), "--gpus auto"),
        ("resume", [*EXAMPLE_ARGS, "--overwrite"], SlurmOptions(), "start the study over"),
        ("resume", [*EXAMPLE_ARGS, "--grace", "9"], SlurmOptions(), "slurm resume --grace"),
        ("array", [*EXAMPLE_ARGS, "--tasks", "0:9"], SlurmOptions(), "--tasks array"),
        ("array", ["run", "study.py"], SlurmOptions(), "add --seed 42"),
        ("cpu", EXAMPLE_ARGS, SlurmOptions(gpus_per_node=2), "only with the gpu kind"),
        ("cpu", EXAMPLE_ARGS, SlurmOptions(array="0-3"), "only with the array kind"),
        ("cpu", EXAMPLE_ARGS, SlurmOptions(max_rounds=3), "only with the resume kind"),
        ("cpu", EXAMPLE_ARGS, SlurmOptions(nodes=0), "--nodes: expected an integer >= 1"),
        ("cpu", EXAMPLE_ARGS, SlurmOptions(time="1h"), "--time: expected MM, HH:MM:SS"),
        ("cpu", EXAMPLE_ARGS, SlurmOptions(launcher="ssh"), "expected srun or mpiexec"),
        ("cpu", EXAMPLE_ARGS, SlurmOptions(partition="a b"), "--partition: expected"),
        ("array", EXAMPLE_ARGS, SlurmOptions(array="1-x"), "--array: expected A-B"),
        ("resume", EXAMPLE_ARGS, SlurmOptions(grace=120), "--grace: expected less than"),
        ("resume", EXAMPLE_ARGS, SlurmOptions(time="2"), "--signal-lead: expected less than"),
        ("resume", EXAMPLE_ARGS, SlurmOptions(signal="HUP"), "--signal: expected USR1 or TERM"),
    ],
)
def test_bad_options_are_one_line_usage_errors(kind, args, opts, words):
    with pytest.raises(UsageError) as info:
        render(kind, args, opts)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30", 30 * 60),  # M: minutes, as Slurm reads it (not 30 s)
        ("0", None),  # Slurm: a zero time limit is no limit
        ("90", 90 * 60),
        ("2:30", 2 * 60 + 30),  # M:S
        ("10:00", 600),
        ("1:02:03", 3600 + 2 * 60 + 3),  # H:M:S
        ("01:00:00", 3600),
        ("1-12", 86400 + 12 * 3600),  # D-H: a day and 12 hours (not 86,412 s)
        ("1-0", 86400),
        ("1-00", 86400),
        ("1-2:3", 86400 + 2 * 3600 + 3 * 60),  # D-H:M
        ("2-1:30", 2 * 86400 + 3600 + 30 * 60),
        ("1-2:3:4", 86400 + 2 * 3600 + 3 * 60 + 4),  # D-H:M:S
        ("1-00:00:00", 86400),
        (" 30 ", 1800),
        ("UNLIMITED", None),
        ("infinite", None),
        ("Unlimited", None),
    ],
)
def test_time_seconds_reads_slurm_times(text, seconds):
    assert slurm.time_seconds(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "1h",
        "30s",
        "1.5",
        "-1",
        "1-",
        "-1-2",
        "1--2",
        "1-2-3",
        ":30",
        "30:",
        "1:2:3:4",
        "1-2:3:4:5",
        "a",
        "1:x",
        "1 2",
        "never",
    ],
)
def test_time_seconds_refuses_anything_else_in_one_line(text):
    with pytest.raises(UsageError) as info:
        slurm.time_seconds(text)
    assert "--time: expected MM, HH:MM:SS or D-HH:MM:SS" in str(info.value)
    assert repr(text) in str(info.value) and "\n" not in str(info.value)


def test_the_resume_template_reads_the_exit_codes_of_errors_exit_code():
    text = render("resume", EXAMPLE_ARGS)
    assert f'\n{ExitCode.OK:d}) echo "mpibatch: done' in text
    assert f"\n{ExitCode.STOPPED:d}) ;;" in text  # stopped early: requeue
    assert f"exit status $rc ({ExitCode.FAILED:d} tasks failed" in text
    assert f"{ExitCode.USAGE:d} bad input;" in text and f"{ExitCode.STUCK:d} a task hung" in text


# --- the rendered scripts run, with srun, mpibatch and scontrol stubbed -------------------

FAKE_MPIBATCH = """\
echo "args: $* | OMP_NUM_THREADS=$OMP_NUM_THREADS" >> "$FAKE_LOG"
if [ "$FAKE_MODE" = stop ]; then
    trap 'echo "got USR1" >> "$FAKE_LOG"; sleep 0.3; exit 3' USR1
    echo started >> "$FAKE_LOG"
    for _ in $(seq 300); do sleep 0.1; done
    exit 9
fi
exit "$FAKE_MODE"
"""


def run_script(tmp_path, kind, mode, args=EXAMPLE_ARGS, send=None, **env):
    """Run render(kind) with bash and fake tools; (exit code, log lines, output)."""
    bin_ = tmp_path / "bin"
    stub(bin_, "srun", 'while [[ "$1" == -* ]]; do shift; done; exec "$@"\n')
    stub(bin_, "mpibatch", FAKE_MPIBATCH)
    stub(bin_, "scontrol", 'echo "scontrol $*" >> "$FAKE_LOG"\n')
    (tmp_path / "job.sbatch").write_text(render(kind, args))
    log = tmp_path / "log"
    job = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "4", "SLURM_CPUS_PER_TASK": "1", **env}
    path = f"{bin_}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "FAKE_LOG": str(log), "FAKE_MODE": str(mode), **job}
    proc = subprocess.Popen(
        ["bash", "job.sbatch"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    if send is not None:
        for _ in range(400):  # up to ~20 s
            if "started" in (log.read_text() if log.exists() else "") or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None and "started" in log.read_text(), "fake mpibatch never ran"
        proc.send_signal(send)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, log.read_text().splitlines(), out


def test_resume_forwards_the_signal_and_requeues_on_exit_3(tmp_path):
    rc, log, out = run_script(tmp_path, "resume", "stop", send=signal.SIGUSR1)
    assert rc == 0, out
    assert log[0].startswith("args: run study.py --reps 1000 --seed 42 --threads-per-rank 1")
    assert "--grace 60 --out study.h5 |" in log[0] and "--resume" not in log[0]
    assert log[-2:] == ["got USR1", "scontrol requeue 77"]
    assert "round 1 of at most 10" in out and "requeueing job 77 for round 2" in out


def test_resume_stops_requeueing_after_max_rounds(tmp_path):
    (tmp_path / "study.h5").write_text("")
    rc, log, out = run_script(tmp_path, "resume", 3, SLURM_RESTART_COUNT="9")
    assert rc == 3
    assert "--out study.h5 --resume" in log[0] and not any("scontrol" in x for x in log)
    assert "round 10 of 10: not requeued" in out


@pytest.mark.parametrize("mode", [0, 1, 2, 4])
def test_resume_ends_with_mpibatch_status_when_not_stopped(tmp_path, mode):
    rc, log, _ = run_script(tmp_path, "resume", mode)
    assert rc == mode and not any("scontrol" in x for x in log)


def test_array_element_runs_its_part_and_resumes_an_existing_one(tmp_path):
    (tmp_path / "study.part2.h5").write_text("")
    rc, log, _ = run_script(tmp_path, "array", 0, SLURM_ARRAY_TASK_ID="2")
    assert rc == 0
    assert log[0].endswith("--tasks array --out study.part2.h5 --resume | OMP_NUM_THREADS=")


@pytest.mark.parametrize("kind", ["cpu", "hybrid", "gpu"])
def test_simple_kinds_run_mpibatch_and_pass_on_its_exit_status(tmp_path, kind):
    args = ["run", "my study.py", "--grid", "a=1,2", "--out", "o.h5"]
    rc, log, out = run_script(tmp_path, kind, 1, args, SLURM_CPUS_PER_TASK="4")
    assert rc == 1 and "4 ranks x 4 core(s)" in out
    tail = {"cpu": "", "hybrid": "", "gpu": " --gpus auto"}[kind]
    omp = "4" if kind == "hybrid" else ""
    assert log == [
        f"args: run my study.py --grid a=1,2 --threads-per-rank 4{tail} --out o.h5 | "
        f"OMP_NUM_THREADS={omp}"
    ]


# --- job environment ------------------------------------------------------------------

JOB_ENV = {
    "SLURM_JOB_ID": "123",
    "SLURM_JOB_NODELIST": "node[01-03]",
    "SLURM_NTASKS": "6",
    "SLURM_TASKS_PER_NODE": "2(x3)",
    "SLURM_CPUS_ON_NODE": "8",
    "SLURM_JOB_GPUS": "0,1",
    "SLURM_RESTART_COUNT": "1",
}


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """A stub squeue on PATH that prints what the test puts in tmp_path/squeue.out."""
    out = tmp_path / "squeue.out"
    out.write_text("2026-11-25T04:10:00 1:00:00\n")
    stub(tmp_path / "bin", "squeue", f'echo "$*" > {tmp_path}/squeue.args; cat {out}\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return out


def test_job_info_reads_the_job(squeue):
    pytest.importorskip("hostlist", reason="python-hostlist expands node lists")
    info = slurm.job_info(JOB_ENV)
    assert info["nodes"] == ["node01", "node02", "node03"] and info["nodelist"] == "node[01-03]"
    assert info["job_id"] == 123 and info["ntasks"] == 6 and info["restart_count"] == 1
    assert info["tasks_per_node"] == [2, 2, 2] and info["gpus"] == 2
    assert info["cpus_per_task"] is None and info["array_task_id"] is None
    assert info["end_time"] == datetime(2026, 11, 25, 4, 10).timestamp()
    assert slurm.job_info({"PATH": "/bin"}) is None


def test_job_info_keeps_the_raw_nodelist_without_python_hostlist(monkeypatch, squeue):
    monkeypatch.setitem(sys.modules, "hostlist", None)  # import fails
    info = slurm.job_info(JOB_ENV)
    assert info["nodes"] == "node[01-03]" and "pip install python-hostlist" in info["note"]
    assert slurm.expand_nodes("a1,b2") == ["a1", "b2"]
    assert slurm.counts_per_node("4(x2),3,1(x1)") == [4, 4, 3, 1]
    with pytest.raises(UsageError):
        slurm.counts_per_node("4x2")


@pytest.mark.parametrize(
    "printed, expected",
    [
        ("2026-11-25T04:10:00 1:00:00", datetime(2026, 11, 25, 4, 10).timestamp()),
        ("2026-11-25T04:10:00", datetime(2026, 11, 25, 4, 10).timestamp()),
        ("Unknown 1:00:00", None),
        ("N/A", None),
        ("2027-11-25T04:10:00 UNLIMITED", None),
        ("", None),
    ],
)
def test_end_time_parses_squeue_local_time(squeue, tmp_path, printed, expected):
    squeue.write_text(printed + "\n")
    assert slurm.end_time("55") == expected
    assert (tmp_path / "squeue.args").read_text().split() == ["-h", "-j", "55", "-o", "%e", "%l"]


def test_end_time_is_none_when_squeue_fails_hangs_or_is_missing(tmp_path, monkeypatch):
    bin_, sleep = tmp_path / "bin", shutil.which("sleep")
    monkeypatch.setenv("PATH", str(bin_))
    assert slurm.end_time("1") is None  # no squeue at all
    stub(bin_, "squeue", "echo 'slurm_load_jobs error: Invalid job id' >&2; exit 1\n")
    assert slurm.end_time("1") is None
    stub(bin_, "squeue", f"exec {sleep} 5\n")
    assert slurm.end_time("1", timeout=0.3) is None  # a hung squeue is given up on


def array_env(task_id, lo, hi, count=None, step=None):
    env = {"SLURM_ARRAY_TASK_ID": task_id, "SLURM_ARRAY_TASK_MIN": lo, "SLURM_ARRAY_TASK_MAX": hi}
    env |= {"SLURM_ARRAY_TASK_COUNT": count} if count is not None else {}
    env |= {"SLURM_ARRAY_TASK_STEP": step} if step is not None else {}
    return {k: str(v) for k, v in env.items()}


@pytest.mark.parametrize("n_tasks, count", [(10, 3), (2, 4), (1000, 7), (0, 2), (12, 4)])
def test_array_slices_are_balanced_contiguous_and_cover_every_task(n_tasks, count):
    parts = [slurm.array_slice(n_tasks, array_env(i, 0, count - 1, count)) for i in range(count)]
    assert [t for p in parts for t in p] == list(range(n_tasks))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert slurm.array_slice(10, array_env(1, 0, 2, 3)) == range(4, 7)


def test_array_slice_uses_the_index_among_the_array_ids():
    stepped = [slurm.array_slice(8, array_env(i, 1, 7, 4, 2)) for i in (1, 3, 5, 7)]
    assert stepped == [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    assert slurm.array_slice(9, array_env(6, 5, 7)) == range(3, 6)  # no COUNT: MAX-MIN+1
    with pytest.raises(UsageError, match="evenly spaced array ids"):
        slurm.array_slice(9, array_env(7, 1, 7, 3))  # --array=1,2,7


def test_array_slice_outside_an_array_is_a_usage_error():
    with pytest.raises(UsageError) as info:
        slurm.array_slice(10, {"SLURM_JOB_ID": "5"})
    assert str(info.value) == (
        "--tasks array: not inside a Slurm job array (SLURM_ARRAY_TASK_ID is not set); "
        "use --tasks START:STOP"
    )


def test_hostfile_in_both_flavors():
    assert slurm.hostfile(["n1", "n2"], 4, "openmpi") == "n1 slots=4\nn2 slots=4\n"
    assert slurm.hostfile(["n1", "n2"], [4, 2], "mpich") == "n1:4\nn2:2\n"
    for bad in ((["n1"], [1, 2], "mpich"), (["n1"], 0, "mpich"), (["n1"], 1, "lam"), ([], 1)):
        with pytest.raises(UsageError):
            slurm.hostfile(*bad)


def test_job_hostfile_defaults_to_the_job(squeue):
    pytest.importorskip("hostlist", reason="python-hostlist expands node lists")
    assert slurm.job_hostfile("mpich", env=JOB_ENV) == "node01:2\nnode02:2\nnode03:2\n"
    assert slurm.job_hostfile("openmpi", slots=8, env=JOB_ENV).startswith("node01 slots=8\n")
    cores = os.cpu_count() or 1
    assert slurm.job_hostfile("mpich", hosts=["a"], env={}) == f"a:{cores}\n"
    with pytest.raises(UsageError, match="not inside a Slurm job"):
        slurm.job_hostfile(env={})


# --- submit ---------------------------------------------------------------------------


def test_submit_writes_the_script_and_returns_the_job_id(tmp_path, monkeypatch):
    stub(tmp_path / "bin", "sbatch", f'echo "$@" > {tmp_path}/sbatch.args; echo 123\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    text = render("cpu", EXAMPLE_ARGS)
    assert slurm.submit(text, ["--hold"]) == "123"
    (script,) = tmp_path.glob("mpibatch-cpu-*.sbatch")
    assert script.read_text() == text
    assert (tmp_path / "sbatch.args").read_text().split() == ["--parsable", "--hold", script.name]
    assert slurm.submit(text) == "123"  # same second: a second name, not an overwrite
    assert len(list(tmp_path.glob("mpibatch-cpu-*.sbatch"))) == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_submit_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(UsageError, match="^sbatch not found: run this on a Slurm login node"):
        slurm.submit("#!/bin/bash\n")
    stub(tmp_path / "bin", "sbatch", "echo 'sbatch: error: invalid partition' >&2; exit 1\n")
    with pytest.raises(UsageError, match="sbatch refused .*: sbatch: error: invalid partition"):
        slurm.submit("#!/bin/bash\n")
    stub(tmp_path / "bin", "sbatch", "echo '456;cluster2'\n")
    assert slurm.submit("#!/bin/bash\n", kind="array") == "456"


def test_slurm_module_imports_neither_numpy_nor_mpi():
    code = "import mpibatch.slurm, sys; print('numpy' in sys.modules, 'mpi4py' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False"]
