"""What other processes use of the CPU, and the busy-machine warning that reads it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from contrastive import hardware
from contrastive.hardware import Hardware, busy_cpu_warning, others_busy_cores

CPU = Hardware("cpu", cpu_cores=2, bf16=False, memory_bytes=8 * 2**30)
LINUX = os.path.exists("/proc/stat")


def test_the_echo_of_a_finished_run_in_the_load_average_is_not_a_busy_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The previous run of a script ended seconds ago: the 1-minute average still says 2.1.
    monkeypatch.setattr(os, "getloadavg", lambda: (2.1, 1.5, 1.0))
    monkeypatch.setattr(hardware, "others_busy_cores", lambda: 0.1)
    assert busy_cpu_warning(CPU, threads=2) is None


def test_without_a_sample_the_load_average_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (2.1, 1.5, 1.0))
    monkeypatch.setattr(hardware, "others_busy_cores", lambda: None)  # not Linux
    warning = busy_cpu_warning(CPU, threads=2)
    assert warning is not None and "load average 2.1 on 2 cores)" in warning


def test_busy_cores_are_the_busy_ticks_less_this_process_per_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    # Others keep 1.5 cores busy; this process sleeps.
    monkeypatch.setattr(hardware, "_busy_ticks", lambda: int(1.5 * ticks * time.monotonic()))
    assert others_busy_cores(0.2) == pytest.approx(1.5, abs=0.2)


def test_an_unreadable_stat_file_gives_no_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable() -> int:
        raise OSError("no /proc/stat")

    monkeypatch.setattr(hardware, "_busy_ticks", unreadable)
    assert others_busy_cores(0.01) is None


@pytest.mark.skipif(not LINUX, reason="reads /proc/stat")
def test_a_busy_child_process_is_counted_and_this_one_is_not() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        others = others_busy_cores(0.5)
    finally:
        busy.kill()
        busy.wait()
    assert others is not None and others >= 0.6


def test_this_process_s_own_work_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    # Only this process is busy: a thread of it spins while the sample is taken.
    monkeypatch.setattr(hardware, "_busy_ticks", lambda: int(ticks * time.process_time()))
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        others = others_busy_cores(0.3)
    finally:
        stop.set()
        spinner.join()
    assert others is not None and others < 0.2


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse2 avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512, no bf16: emulated
        ("fpu avx2 avx512f avx512_bf16", True),  # Cooper Lake, Zen 4
        ("fpu avx2 avx512f amx_bf16 amx_tile", True),  # Sapphire Rapids
        ("fpu sse2 avx2", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags: str, native: bool) -> None:
    # oneDNN's check said yes on the first host (AVX-512 without bf16), where bf16 steps
    # took 164 ms against 93-113 ms in float32, and `--precision auto` chose bf16.
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    )
    assert hardware.cpu_runs_bf16_natively(str(cpuinfo)) is native


def test_without_cpu_flags_onednn_decides(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert hardware.cpu_runs_bf16_natively(str(tmp_path / "missing")) is True


def test_auto_precision_on_a_cpu_follows_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from contrastive.training import budget

    for native, expected in ((False, "32-true"), (True, "bf16-mixed")):
        monkeypatch.setattr(budget, "cpu_runs_bf16_natively", lambda native=native: native)
        assert budget.resolve_precision("auto", "cpu") == expected
    assert hardware.detect_hardware("cpu").bf16 is hardware.cpu_runs_bf16_natively()
