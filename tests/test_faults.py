"""``xpnet train`` under faults: kill -9 and Ctrl-C at several points, outputs that cannot be
written, two runs on one checkpoint, ranks sharing cores, and bad inputs.

Every case that starts a process has its own timeout; a hang fails the case. What must hold:
nothing written is lost or torn (kill -9 + ``--resume`` equals the uninterrupted run bit for
bit), nothing hangs (Ctrl-C ends every rank within a second or so, one line, status 130), and
every failure is one line.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from xpnet import outputs
from xpnet.checkpoint import remove_stale_temporaries
from xpnet.errors import ConfigError
from xpnet.cli import main
from xpnet.outputs import RunLock


pytestmark = pytest.mark.usefixtures("isolated_mnist")

CASE_TIMEOUT_S = 60
# Ctrl-C must end a job at once; the bound leaves room for a loaded CI machine, not for a hang
INTERRUPT_BOUND_S = 5.0
MPIEXEC = Path(sys.executable).parent / "mpiexec"
PROGRAMS = Path(__file__).parent / "mpi_programs"
# small_mnist's 300 training images in batches of 20: 15 steps an epoch; 3000 hidden units and
# Adam make a 28 MB checkpoint, so a save lasts long enough to be caught in the middle
BIG = ["--device", "cpu", "--batch-size", "20", "--hidden", "3000", "--optimizer", "adam", "-q"]
EPOCHS = 6  # each save after the first is a chance to kill one in the middle
SMALL = ["--device", "cpu", "--train-limit", "2000", "--batch-size", "50", "--hidden", "20", "-q"]


def env(**extra: str) -> dict[str, str]:
    root = str(Path(__file__).parent.parent)
    return {**os.environ, "PYTHONPATH": root, "MPIEXEC_TIMEOUT": str(CASE_TIMEOUT_S),
            "OMP_NUM_THREADS": "1", **extra}


def start(*argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], env=kwargs.pop("env", env()),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process: subprocess.Popen, timeout: float = CASE_TIMEOUT_S) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"hung: {process.args}")


def wait_for(condition, timeout: float = CASE_TIMEOUT_S, step: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the awaited moment never came")
        time.sleep(step)


def params_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "meta"}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------ kill -9, then --resume

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_mnist) -> dict[str, np.ndarray]:
    path = tmp_path_factory.mktemp("straight") / "run.npz"
    process = start("-m", "xpnet", "train", *BIG, "--data-dir", str(small_mnist),
                    "--epochs", str(EPOCHS), "--save", str(path))
    finish(process)
    assert process.returncode == 0
    return params_of(path)


def _inside_a_save(path: Path, process: subprocess.Popen) -> callable:
    def saving() -> bool:
        if process.poll() is not None:
            pytest.fail(f"no save of the {EPOCHS} was caught in the middle")
        return any(p.name.startswith(f".{path.name}.") and p.name.endswith(".tmp")
                   for p in path.parent.iterdir())
    return saving


@pytest.mark.parametrize("moment", ["after the first checkpoint", "inside a save"])
def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, small_mnist, uninterrupted,
                                                         moment):
    path = tmp_path / "run.npz"
    process = start("-m", "xpnet", "train", *BIG, "--data-dir", str(small_mnist),
                    "--epochs", str(EPOCHS), "--save", str(path))
    wait_for(path.exists)
    if moment == "inside a save":  # a later epoch's: the first one's checkpoint is there
        wait_for(_inside_a_save(path, process), step=0)
    process.kill()
    finish(process)
    if moment == "inside a save":
        assert temporaries(tmp_path), "the kill came after the save"
    resumed = start("-m", "xpnet", "train", "--device", "cpu", "-q", "--resume", str(path),
                    "--data-dir", str(small_mnist), "--epochs", str(EPOCHS), "--save", str(path))
    out, err = finish(resumed)
    assert resumed.returncode == 0, err
    assert temporaries(tmp_path) == []  # the killed save's file went with the next save
    assert not (tmp_path / ".run.npz.lock").exists()
    for key, value in uninterrupted.items():
        assert np.array_equal(params_of(path)[key], value), key


def test_kill_9_during_imports_leaves_nothing(tmp_path):
    process = start("-m", "xpnet", "train", *SMALL, "--epochs", "1", "--save",
                    str(tmp_path / "run.npz"))
    time.sleep(0.1)
    process.kill()
    finish(process)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_stale_temporaries_go_and_live_ones_stay(tmp_path):
    target = tmp_path / "run.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale, live = (tmp_path / f".run.npz.{dead}.abc.tmp", tmp_path / f".run.npz.{os.getpid()}.x.tmp")
    other = tmp_path / f".other.npz.{dead}.abc.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"half a checkpoint")
    assert remove_stale_temporaries(target) == [stale]
    assert live.exists() and other.exists()


# ------------------------------------------------------------------ Ctrl-C

def interrupt(process: subprocess.Popen, group: bool) -> float:
    """Ctrl-C as a terminal sends it (to the process group), or to the process alone; the
    seconds until the process ended."""
    sent = time.monotonic()
    if group:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=CASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("Ctrl-C did not end the job")
    return time.monotonic() - sent


def test_ctrl_c_during_imports_is_one_line():
    """-X importtime reports each import as it finishes: interrupt once NumPy's begin."""
    process = start("-X", "importtime", "-m", "xpnet", "train", *SMALL, "--epochs", "50")
    for line in process.stderr:
        if "numpy" in line:
            break
    seconds = interrupt(process, group=False)
    out, err = process.communicate()
    lines = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert process.returncode == 130 and lines == ["xpnet train: interrupted"], err[-2000:]
    assert seconds < INTERRUPT_BOUND_S


@pytest.mark.parametrize("delay", [1.5, 3.0])
def test_ctrl_c_during_training_is_one_line(tmp_path, delay):
    path = tmp_path / "run.npz"
    process = start("-m", "xpnet", "train", *SMALL, "--epochs", "500", "--save", str(path))
    time.sleep(delay)
    seconds = interrupt(process, group=False)
    out, err = process.communicate()
    assert process.returncode == 130 and err == "xpnet train: interrupted\n", err
    assert seconds < INTERRUPT_BOUND_S
    assert temporaries(tmp_path) == [] and not (tmp_path / ".run.npz.lock").exists()


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec is not installed: pip install 'xpnet[mpi]'")
def test_ctrl_c_under_mpiexec_ends_every_rank_every_time():
    """12 tries, from the imports to the middle of training, half of them sent to the whole
    process group (a terminal's Ctrl-C), half to mpiexec alone (which passes it on)."""
    times = []
    for attempt, delay in enumerate((0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 2.0, 2.4, 2.8, 3.2)):
        process = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, "-m", "xpnet",
                                    "train", *SMALL, "--epochs", "500"], env=env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        time.sleep(delay)
        times.append(interrupt(process, group=attempt % 2 == 0))
        out, err = process.communicate()
        assert process.returncode == 130, (delay, out, err)
        assert err == "xpnet train: interrupted\n", (delay, err)
        assert "Traceback" not in out
    print("seconds from Ctrl-C to the end of the job:", [f"{t:.2f}" for t in times])
    assert max(times) < INTERRUPT_BOUND_S, times


# ------------------------------------------------------------------ outputs that cannot be written

def expect_one_line(capsys, argv: list[str], message: str, command: str = "train") -> None:
    code = main([command, *argv])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"xpnet {command}: error: ") and message in captured.err
    assert captured.out == ""  # refused before the device line, before any step


@pytest.mark.parametrize("flag", ["--save", "--log", "--plot"])
@pytest.mark.parametrize("code, reason", [(errno.EROFS, "Read-only file system"),
                                          (errno.ENOSPC, "No space left on device")])
def test_an_output_that_cannot_be_written_is_refused_first(capsys, monkeypatch, tmp_path, flag,
                                                           code, reason):
    """A read-only mount and a full disk, as the probe's write meets them (injected: tests may
    not mount)."""
    def refuse(path, mode="r", *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(outputs, "open", refuse, raising=False)
    name = {"--save": "run.npz", "--log": "run.jsonl", "--plot": "run.png"}[flag]
    expect_one_line(capsys, [*SMALL, flag, str(tmp_path / name)],
                    f"cannot write {flag} {tmp_path / name}: {reason}")
    assert list(tmp_path.iterdir()) == []


def can_mount(folder: Path) -> bool:
    """Whether this test may mount a tmpfs in a mount namespace of its own (root, or a kernel
    that lets users unshare), as a real read-only or full place."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {folder}"],
                           capture_output=True, timeout=CASE_TIMEOUT_S)
    return probe.returncode == 0


@pytest.mark.parametrize("place, code", [("read-only", errno.EROFS), ("full", errno.ENOSPC)])
def test_a_read_only_or_full_place_really_mounted(capsys, monkeypatch, tmp_path, place, code):
    """A tmpfs mounted read-only, or filled up, where the test may mount; else the same
    ``OSError`` injected at the write. The outcome must be the same line either way."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    path = folder / "run.npz"
    expected = f"xpnet train: error: cannot write --save {path}: {os.strerror(code)}"
    if can_mount(folder):
        mount = {"read-only": f"mount -t tmpfs -o size=1m,ro tmpfs {folder}",
                 "full": f"mount -t tmpfs -o size=64k tmpfs {folder} && "
                         f"(dd if=/dev/zero of={folder}/fill bs=4k count=100 2>/dev/null; true)"}
        job = subprocess.run(["unshare", "-m", "sh", "-c", f'{mount[place]} && exec "$@"', "sh",
                              sys.executable, "-m", "xpnet", "train", *SMALL, "--save", str(path)],
                             env=env(), capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
        code_seen, out, err = job.returncode, job.stdout, job.stderr
    else:
        def refuse(path, mode="r", *args, **kwargs):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(outputs, "open", refuse, raising=False)
        code_seen = main(["train", *SMALL, "--save", str(path)])
        out, err = capsys.readouterr()
    assert code_seen == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(expected), err


@pytest.mark.parametrize("where, message", [
    ("/proc/x.npz", "cannot write --save /proc/x.npz"),
    ("{tmp}", "is a folder; name a file in it"),
    ("{tmp}/missing/run.npz", "does not exist; create it first"),
])
def test_impossible_save_places(capsys, tmp_path, where, message):
    expect_one_line(capsys, [*SMALL, "--save", where.format(tmp=tmp_path)], message)


def test_export_output_is_proven_writable_first(capsys, tmp_path):
    expect_one_line(capsys, ["--checkpoint", str(tmp_path / "none.npz"), "--output", str(tmp_path)],
                    "is a folder", command="export")


# ------------------------------------------------------------------ two runs on one checkpoint

def test_a_second_run_on_the_same_save_is_refused(capsys, tmp_path):
    path = tmp_path / "run.npz"
    first = start("-m", "xpnet", "train", *SMALL, "--epochs", "500", "--save", str(path))
    wait_for(lambda: (tmp_path / ".run.npz.lock").exists())
    try:
        expect_one_line(capsys, [*SMALL, "--save", str(path)],
                        f"--save {path} is in use by another xpnet run (PID {first.pid})")
    finally:
        first.kill()
        finish(first)
    with RunLock(path):  # the kernel dropped the killed run's lock
        pass


def test_the_lock_names_its_holder_and_goes_with_it(tmp_path):
    path = tmp_path / "run.npz"
    with RunLock(path):
        assert (tmp_path / ".run.npz.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(ConfigError, match=rf"in use by another xpnet run \(PID {os.getpid()}\)"):
            RunLock(path).acquire()
    assert list(tmp_path.iterdir()) == []
    with RunLock(path):  # free again
        pass


# ------------------------------------------------------------------ ranks sharing the cores

@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec is not installed: pip install 'xpnet[mpi]'")
def test_each_rank_gets_its_share_of_the_cores(tmp_path):
    from xpnet.threads import THREAD_VARIABLES, available_cores

    clean = {k: v for k, v in env().items() if k not in THREAD_VARIABLES}

    def pools(environment: dict[str, str]) -> list[dict]:
        for old in tmp_path.glob("rank*.json"):
            old.unlink()
        job = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(PROGRAMS / "threads.py"),
                              str(tmp_path)], env=environment, capture_output=True, text=True,
                             timeout=CASE_TIMEOUT_S + 30)
        assert job.returncode == 0, job.stderr
        return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    share = max(1, available_cores() // 2)
    for rank in pools(clean):
        assert rank["threads"] == share and rank["torch"] == share, rank
        assert rank["pools"] and all(n <= share for n in rank["pools"]), rank
    # a thread variable the user set is left alone
    assert [rank["threads"] for rank in pools({**clean, "OMP_NUM_THREADS": "1"})] == [None, None]

    train = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "xpnet", "train",
                            *SMALL, "--iters", "4"], env=clean, capture_output=True, text=True,
                           timeout=CASE_TIMEOUT_S + 30)
    assert train.returncode == 0, train.stderr
    first = train.stdout.splitlines()[0]
    assert first.startswith("xpnet: training on cpu (numpy), float32, 2 processes (data-parallel")
    assert first.endswith(f"), {share} thread{'s' if share > 1 else ''} each")


# ------------------------------------------------------------------ bad inputs and papercuts

def test_sizes_that_cannot_fit_are_refused_before_allocation(capsys):
    expect_one_line(capsys, ["--device", "cpu", "--hidden", "2000000000"],
                    "--hidden 2000000000 needs at least 12.7 TB for its weights and their "
                    "gradients, more than the")


def test_an_allocation_failure_is_one_line_naming_the_option(capsys, monkeypatch):
    from xpnet import training

    def no_memory(self, x, t):
        raise MemoryError("Unable to allocate 3.2 GiB for an array with shape (100, 8000000)")

    monkeypatch.setattr(training.Trainer, "step", no_memory)
    code = main(["train", *SMALL, "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err == ("xpnet train: error: out of memory (Unable to allocate 3.2 GiB for an array "
                   "with shape (100, 8000000)); lower --batch-size or --hidden, or pick a "
                   "smaller --model\n")


def test_divergence_is_one_line_without_numpy_warnings(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail the run
        code = main(["train", *SMALL, "--optimizer", "sgd", "--lr", "1e30", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "loss became nan" in err, err
    assert np.geterr()["over"] == "warn"  # the errstate was scoped to training


def test_resuming_a_file_that_is_no_checkpoint(capsys, tmp_path):
    notes = tmp_path / "notes.npz"
    notes.write_text("not a checkpoint")
    expect_one_line(capsys, ["--device", "cpu", "--resume", str(notes)],
                    f"{notes} is not a readable xpnet checkpoint")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": 1}], dtype=object))
    main(["train", "--device", "cpu", "--resume", str(pickled)])
    assert "allow_pickle" not in capsys.readouterr().err


def test_quiet_hides_the_no_gpu_warning(capsys, caplog):
    import xpnet

    assert main(["train", *SMALL[2:], "--device", "auto", "--iters", "2"]) == 0
    assert "no usable GPU" not in caplog.text + capsys.readouterr().err
    if xpnet.device("auto").fallback_reason:  # and without -q it is said
        caplog.clear()
        assert main(["train", *SMALL[2:-1], "--device", "auto", "--iters", "2"]) == 0
        assert "no usable GPU" in caplog.text


def test_one_epoch_says_epoch(capsys):
    assert main(["train", "--device", "cpu", "--train-limit", "1000", "--hidden", "10",
                 "--epochs", "1"]) == 0
    assert ", 1 epoch, seed 0" in capsys.readouterr().out


def test_help_has_no_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_a_one_epoch_plot_is_drawn_to_scale(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    from xpnet.plotting import plot_history
    from xpnet.training import EpochRecord

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, path: drawn.append(figure))
    record = EpochRecord(epoch=1, iterations=600, loss=0.31, train_acc=0.9151, test_acc=0.9153,
                         seconds=1.0, samples_per_s=6e4)
    plot_history([record], tmp_path / "one.png", loss_history=[2.3, 1.0, 0.5])
    accuracy = drawn[0].axes[1]
    assert accuracy.get_xlim() == (0, 2) and accuracy.get_ylim() == (0, 1.02)


def test_check_reports_each_row_as_it_finishes():
    from xpnet.commands.check import format_header, format_row
    from xpnet.device_check import CASES, run_checks

    seen = []
    rows = run_checks("cpu", ("float64",), cases=CASES[:2], on_row=seen.append)
    assert seen == rows and len(rows) == 4
    column = format_header().index("result")  # widths known before the first row
    assert all(format_row(row).index("pass") == column for row in rows)
