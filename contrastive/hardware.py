"""What the planner may use: CPU cores and bf16, or the GPUs, read without initialising CUDA.

A process that initialised CUDA cannot fork workers that use it (Lightning forks for
multi-GPU runs in notebooks), so GPUs are described through NVML, the driver's management
library (:func:`nvml_gpus`). torch is imported by the functions that ask it, so that a
command line reading the core count does not wait for it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from contrastive.errors import ContrastiveError


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as NVML reports it.

    Attributes:
        name: Marketing name (``NVIDIA H200``).
        memory_bytes: Total device memory.
        compute_capability: ``(major, minor)``.
    """

    name: str
    memory_bytes: int
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class Hardware:
    """The machine a run will train on.

    Attributes:
        accelerator: ``cpu`` or ``cuda``.
        cpu_cores: CPU cores this process may use.
        bf16: Whether the training device runs bf16 natively.
        memory_bytes: Host memory (the decoded image cache lives in it).
        gpus: The GPUs a CUDA run uses (empty on CPU).
        devices: Processes (GPUs or CPU processes) the run trains on.
    """

    accelerator: str
    cpu_cores: int
    bf16: bool
    memory_bytes: int
    gpus: tuple[GpuInfo, ...] = ()
    devices: int = 1

    @property
    def on_gpu(self) -> bool:
        return self.accelerator == "cuda"

    def describe(self) -> str:
        """One line for the plan's printout."""
        if self.on_gpu and self.gpus:
            gpu = self.gpus[0]
            count = f"{self.devices} x " if self.devices > 1 else ""
            return (
                f"{count}{gpu.name} ({gpu.memory_bytes / 2**30:.0f} GiB, "
                f"{'bf16' if self.bf16 else 'fp32'})"
            )
        return (
            f"{self.cpu_cores} CPU core{'s' if self.cpu_cores != 1 else ''}"
            f"{' x ' + str(self.devices) + ' processes' if self.devices > 1 else ''}, "
            f"{'native bf16' if self.bf16 else 'fp32 (no native bf16)'}, "
            f"{self.memory_bytes / 2**30:.0f} GiB memory"
        )


#: The most DataLoader workers chosen automatically: more rarely repay their start-up and memory.
MAX_AUTO_WORKERS = 8


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM or container share)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: Seconds :func:`others_busy_cores` watches the CPU for.
BUSY_SAMPLE_SECONDS = 0.3


def _busy_ticks() -> int:
    """Busy clock ticks of all CPUs since boot, from Linux's ``/proc/stat``."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    return sum(fields) - fields[3] - fields[4]


def others_busy_cores(seconds: float = BUSY_SAMPLE_SECONDS) -> float | None:
    """How many cores other processes keep busy, watched for ``seconds``: the busy time of
    all CPUs less this process's own, per second. None where ``/proc/stat`` is not there
    (not Linux) or unreadable."""
    try:
        busy_before = _busy_ticks()
        own_before, wall_before = time.process_time(), time.monotonic()
        time.sleep(seconds)
        busy_after = _busy_ticks()
        own_after, wall_after = time.process_time(), time.monotonic()
        ticks_per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    busy = (busy_after - busy_before) / ticks_per_second - (own_after - own_before)
    return max(0.0, busy) / max(wall_after - wall_before, 1e-6)


def busy_cpu_warning(hardware: Hardware, threads: int | None = None) -> str | None:
    """A warning where other processes already keep the CPU busy (None otherwise, or on a GPU).

    PyTorch runs one thread per core; when another process holds a core too, its threads
    wait on each other. On 2 cores beside a process multiplying matrices on 2 threads, the
    planner measured 42 images/s with 2 threads and 324 with ``OMP_NUM_THREADS=1`` (the
    flowers, one minute apart; a user's sweep saw 22 against 391 beside a test run). The
    1-minute load average says whether others run; where it does, a short sample of what
    other processes use now (:func:`others_busy_cores`) confirms it, since the average
    still counts a job that ended seconds ago (the previous run of a script: load 2.0-2.1
    on an idle 2-core machine).
    """
    if hardware.on_gpu or not hasattr(os, "getloadavg"):
        return None
    import torch

    threads = torch.get_num_threads() if threads is None else threads
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    if threads < 2 or load < hardware.cpu_cores:
        return None
    others = others_busy_cores()
    if others is not None and others < hardware.cpu_cores / 2:
        return None
    now = "" if others is None else f", other processes using {others:.1f} of them now"
    return (
        f"the machine is busy (load average {load:.1f} on {hardware.cpu_cores} cores{now}) "
        f"before this run starts: PyTorch's {threads} threads then wait on each other (8x slower "
        "measured on 2 shared cores); run alone, or start with OMP_NUM_THREADS=1"
    )


def check_accelerator(accelerator: str) -> None:
    """Refuses a GPU accelerator on a machine without one, before any work is done.

    Raises:
        ContrastiveError: If ``accelerator`` is ``gpu``/``cuda`` and no CUDA GPU is visible
            (``gpu`` also takes Apple's MPS), or ``mps`` and MPS is not available.
    """
    import torch

    mps = torch.backends.mps.is_available()
    missing = (
        (accelerator == "cuda" and not torch.cuda.is_available())
        or (accelerator == "gpu" and not (torch.cuda.is_available() or mps))
        or (accelerator == "mps" and not mps)
    )
    if missing:
        raise ContrastiveError(
            f"--accelerator {accelerator}: no such device is visible on this machine "
            "(torch sees none); use --accelerator cpu, or auto to take a GPU where there is one"
        )


def detect_hardware(accelerator: str = "auto", devices: int = 1) -> Hardware:
    """Describes this machine for ``accelerator`` (``auto``, ``cpu``, ``gpu``/``cuda``)."""
    import torch

    gpus = tuple(nvml_gpus())
    use_gpu = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and (bool(gpus) or torch.cuda.is_available())
    )
    cores = usable_cores()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if use_gpu:
        bf16 = gpus_run_bf16_natively(gpus)
        return Hardware("cuda", cores or 1, bf16, memory, gpus, max(devices, 1))
    return Hardware("cpu", cores or 1, cpu_runs_bf16_natively(), memory, (), max(devices, 1))


#: CPU flags of bf16 arithmetic in hardware (Linux's names): AVX-512 BF16 (Cooper Lake,
#: AMD Zen 4 and later) and AMX (Sapphire Rapids and later).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_runs_bf16_natively(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bf16 itself, rather than converting to float32.

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) answers yes on
    any AVX-512 CPU, and there bf16 is the slower choice: on a 2-core Xeon with AVX-512 and
    neither flag, a quarter-width ResNet-10 step (batch 128, 24 px views) took 164 ms in
    bf16 against 93-113 ms in float32. Where ``cpuinfo`` cannot be read (not Linux),
    oneDNN's check decides, as before.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            flags = next(
                (line.split(":", 1)[1].split() for line in handle if line.startswith("flags")),
                None,
            )
    except OSError:
        flags = None
    if flags is None:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return not NATIVE_BF16_FLAGS.isdisjoint(flags)


def gpus_run_bf16_natively(gpus: Sequence[GpuInfo] | None = None) -> bool:
    """Whether every NVIDIA GPU has native bf16 (compute capability 8.0 or newer).

    Every GPU of the machine counts (NVML does not know ``CUDA_VISIBLE_DEVICES``): one old
    GPU makes it fp32, the safe side. Without NVML (no NVIDIA driver, ROCm) the answer is
    no, unless CUDA is already initialised in this process and can say so itself; this
    function never initialises CUDA.

    Args:
        gpus: The GPUs, where the caller has read them already; None reads them through NVML.
    """
    import torch

    if torch.cuda.is_initialized():
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # PyTorch < 2.4 has no emulation flag and does not count it
            return torch.cuda.is_bf16_supported()
    gpus = nvml_gpus() if gpus is None else gpus
    return bool(gpus) and min(gpu.compute_capability for gpu in gpus) >= (8, 0)


def nvml_gpus() -> list[GpuInfo]:
    """Every NVIDIA GPU of the machine, read through NVML; empty without a driver.

    NVML does not know ``CUDA_VISIBLE_DEVICES``: every GPU of the machine is listed.
    """
    from ctypes import CDLL, byref, c_int, c_ulonglong, c_void_p, create_string_buffer

    try:
        nvml = CDLL("libnvidia-ml.so.1")
    except OSError:
        return []
    if nvml.nvmlInit_v2() != 0:
        return []
    try:
        count = c_int(0)
        if nvml.nvmlDeviceGetCount_v2(byref(count)) != 0:
            return []
        gpus = []
        for index in range(count.value):
            handle, major, minor = c_void_p(), c_int(0), c_int(0)
            if nvml.nvmlDeviceGetHandleByIndex_v2(index, byref(handle)) != 0:
                return []
            if nvml.nvmlDeviceGetCudaComputeCapability(handle, byref(major), byref(minor)) != 0:
                return []
            name = create_string_buffer(96)
            nvml.nvmlDeviceGetName(handle, name, 96)
            # nvmlMemory_t: total, free, used (unsigned long long each).
            memory = (c_ulonglong * 3)()
            nvml.nvmlDeviceGetMemoryInfo(handle, byref(memory))
            gpus.append(
                GpuInfo(
                    name.value.decode(errors="replace"), int(memory[0]), (major.value, minor.value)
                )
            )
        return gpus
    finally:
        nvml.nvmlShutdown()
