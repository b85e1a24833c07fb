"""``xpnet check``: the table users run on their own hardware, and its exit status."""

from __future__ import annotations

import subprocess
import sys

import pytest

import xpnet
from xpnet import backend as backend_module
from xpnet.cli import main
from xpnet.layers import SoftmaxWithLoss
from xpnet.device_check import CASES


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu"])
def test_check_prints_a_passing_table(capsys, spec):
    assert main(["check", "--device", spec]) == 0
    out = capsys.readouterr().out
    assert "max abs error" in out and "max rel error" in out
    for case in CASES:
        assert case.name in out
    rows = [line for line in out.splitlines() if line.startswith(("parity", "gradient"))]
    assert len(rows) == 2 * 2 * len(CASES) and all(line.endswith("pass") for line in rows)


def test_check_fails_when_a_backward_is_broken(capsys, monkeypatch):
    monkeypatch.setattr(SoftmaxWithLoss, "backward", lambda self, dout=1: (self.y - self._t_one_hot) * dout)
    assert main(["check", "--device", "cpu", "--dtype", "float64"]) == 1
    out = capsys.readouterr().out
    assert "FAIL gradient SoftmaxWithLoss (labels) float64: gradient check failed" in out


def test_check_on_cuda_without_a_gpu_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(backend_module, "cuda_status", lambda: (0, "CuPy is not installed"))
    assert main(["check", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xpnet check: error: cannot use cuda:0: CuPy is not installed")
    assert "\n" not in err


def test_python_dash_m_gives_no_traceback_for_a_bad_device():
    result = subprocess.run([sys.executable, "-m", "xpnet", "check", "--device", "tpu"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown device 'tpu'" in result.stderr and "Traceback" not in result.stderr


def test_real_cuda_probe_on_this_machine():
    """Without a usable GPU, --device cuda exits 2 with the probe's reason, never a traceback."""
    count, reason = xpnet.cuda_status()
    result = subprocess.run([sys.executable, "-m", "xpnet", "check", "--device", "cuda",
                             "--dtype", "float32"], capture_output=True, text=True)
    if count:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode == 2 and reason in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
