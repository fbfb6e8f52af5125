"""Settings: keyword -> MPIBATCH_<NAME> -> default, strict parsing, Slurm's durations."""

import pytest

from mpibatch._config import DEFAULTS, SETTINGS, env_name, parse_bool, parse_duration, setting
from mpibatch.errors import UsageError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(env_name(name), raising=False)


SLURM_TIMES = {  # as sbatch --time reads them
    "30": 30 * 60,  # minutes
    "0:30": 30,  # minutes:seconds
    "10:00": 600,
    "90:00": 5400,
    "01:00:00": 3600,  # hours:minutes:seconds
    "1:2:3": 3723,
    "1-00": 86400,  # days-hours
    "1-12": 129_600,
    "2-1:30": 2 * 86400 + 3600 + 30 * 60,  # days-hours:minutes
    "1-2:3:4": 86400 + 7200 + 180 + 4,  # days-hours:minutes:seconds
    " 45 ": 2700,
}


@pytest.mark.parametrize("text", sorted(SLURM_TIMES))
def test_durations_read_as_slurm_reads_them(text):
    seconds = parse_duration(text)
    assert seconds == SLURM_TIMES[text]


@pytest.mark.parametrize("text", ["UNLIMITED", "infinite", "0", "0:00:00", "0-0"])
def test_unlimited_and_zero_durations_are_no_limit(text):
    seconds = parse_duration(text)
    assert seconds is None


@pytest.mark.parametrize(
    "text", ["soon", "-1", "1:2:3:4", "", "1.5", "1-", "-1:00", "1-2-3", "1:", ":30", "1h"]
)
def test_bad_durations_are_one_line_naming_the_flag(text):
    with pytest.raises(UsageError) as info:
        parse_duration(text, "--time")
    msg = str(info.value)
    assert msg.startswith("--time: expected MM, HH:MM:SS or D-HH:MM:SS (or MM:SS, D-HH")
    assert f"got {text!r}" in msg and "\n" not in msg


def test_time_limit_setting_strings_are_slurm_times_and_numbers_are_seconds(monkeypatch):
    assert setting("time_limit", "30") == 1800.0
    assert setting("time_limit", "1-12") == 129_600.0
    assert setting("time_limit", 30) == 30.0  # from Python: seconds
    assert setting("time_limit", 0) is None and setting("time_limit") is None
    monkeypatch.setenv("MPIBATCH_TIME_LIMIT", "2:00:00")
    assert setting("time_limit") == 7200.0
    with pytest.raises(UsageError, match=r"^time_limit: expected .* got -1; e.g. --time-limit"):
        setting("time_limit", -1)


@pytest.mark.parametrize("word", ["1", "true", "YES", "On", " on "])
def test_booleans_true(word):
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["0", "false", "No", "OFF"])
def test_booleans_false(word):
    assert parse_bool(word) is False


@pytest.mark.parametrize("word", ["maybe", "", "2", "y", "truee"])
def test_a_junk_boolean_in_the_environment_is_an_error_not_false(monkeypatch, word):
    monkeypatch.setenv("MPIBATCH_QUIET", f"{word}x")  # never empty: empty is unset
    with pytest.raises(UsageError) as info:
        setting("quiet")
    assert str(info.value) == (
        "MPIBATCH_QUIET: expected a boolean (1/0, true/false, yes/no, on/off), "
        f"got {word + 'x'!r}; fix or unset it"
    )


def test_keyword_then_environment_then_default(monkeypatch):
    assert setting("grace") == DEFAULTS["grace"] == 30.0
    monkeypatch.setenv("MPIBATCH_GRACE", "5")
    assert setting("grace") == 5.0
    assert setting("grace", 2) == 2.0  # the keyword wins
    monkeypatch.setenv("MPIBATCH_GRACE", "  ")
    assert setting("grace") == 30.0  # blank is unset


def test_every_environment_error_names_its_variable(monkeypatch):
    bad = {"gather_mb": "0", "threads_per_rank": "x", "progress_seconds": "inf", "gpus": "-1"}
    bad |= {"seed": "-3", "streams": "global", "schedule": "fancy", "root_tasks": "fiber"}
    bad |= {"dedicated_root": "maybe", "retries": "-1", "max_failures": "0", "grace": "-1"}
    bad |= {"block_size": "0", "ranks_per_gpu": "0", "task_timeout": "0", "flush_seconds": "x"}
    bad |= {"quiet": "2", "time_limit": "soon", "leaders": "maybe", "node_size": "0"}
    bad |= {"isolation": "partly", "task_memory": "lots"}
    assert set(bad) == set(SETTINGS)  # every setting is covered
    for name, text in bad.items():
        var = env_name(name)
        monkeypatch.setenv(var, text)
        with pytest.raises(UsageError) as info:
            setting(name)
        msg = str(info.value)
        assert msg.startswith(f"{var}: expected ") and msg.endswith(
            f"got {text!r}; fix or unset it"
        )
        monkeypatch.delenv(var)


def test_keyword_errors_name_the_setting_and_a_fix():
    with pytest.raises(UsageError, match=r"^block_size: expected an integer >= 1, got 0; e\.g\."):
        setting("block_size", 0)
    with pytest.raises(UsageError, match="dedicated_root: expected a boolean"):
        setting("dedicated_root", "sometimes")
    with pytest.raises(UsageError, match="threads_per_rank: .* got True"):
        setting("threads_per_rank", True)  # a bool is no count
    assert setting("gpus", "2") == 2 and setting("gpus", 0) == "none"
    assert setting("quiet", True) is True and setting("dedicated_root", "off") is False


def test_sizes_read_as_powers_of_1024():
    from mpibatch._config import size_bytes

    assert size_bytes("4G") == 4 << 30 and size_bytes("512M") == 512 << 20
    assert size_bytes("1.5GiB") == 3 << 29 and size_bytes(1 << 20) == 1 << 20
    for bad in ("4X", "", "1K", 10, True, "-1G"):
        with pytest.raises(ValueError):
            size_bytes(bad)
