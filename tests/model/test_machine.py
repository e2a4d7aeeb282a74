"""The manifests name the CPU: the same code and seed give other last digits, and another model, on another one."""

from __future__ import annotations

import os
import platform

import torch

from tasks.model import machine

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx512f amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""


def test_the_cpu_model_is_the_first_model_name_of_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert machine.cpu_model(tmp_path / "cpuinfo") == "Intel(R) Xeon(R) Platinum 8480+"


def test_without_a_model_name_the_cpu_model_is_what_the_platform_says(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t:   \n")
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert machine.cpu_model(tmp_path / "cpuinfo") == "arm"
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert machine.cpu_model(tmp_path / "missing") == "unknown CPU"


def test_the_description_names_the_model_the_cpus_and_torchs_instruction_set(monkeypatch):
    monkeypatch.setattr(machine, "cpu_model", lambda: "Example CPU")
    capability = torch.backends.cpu.get_cpu_capability()
    expected = f"Example CPU, {os.cpu_count()} logical CPUs, torch CPU capability {capability}"
    assert machine.cpu_description() == expected
