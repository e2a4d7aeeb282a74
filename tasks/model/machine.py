"""The CPU a number was computed on, named in the run's manifest and in a built model's manifest.

The same code, data and seed give floating-point results that differ in the last digits from one CPU to
another: BLAS and oneDNN kernels choose their summation order by the instruction sets they find (AVX2,
AVX-512, AVX512-BF16, AMX tiles), and so does the training of the embedded default model, whose weights,
and test accuracy, then differ too (README, "Reproducibility"). Naming the CPU lets a reviewer tell such a
difference from a change of code or data.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name: the first ``model name`` of ``cpuinfo`` (Linux), else ``platform.processor()``.

    Returns ``"unknown CPU"`` where neither says.
    """
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown CPU"


def cpu_description() -> str:
    """``<model name>, <n> logical CPUs, torch CPU capability <instruction set>``.

    The capability is the widest instruction set torch's own kernels dispatch to (``AVX512``, ``AVX2``,
    ``DEFAULT``; ``torch.backends.cpu.get_cpu_capability``).
    """
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch CPU capability {capability}"
