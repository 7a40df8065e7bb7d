"""bench/machine.py: the machine and versions every bench's JSON line ends with."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import machine


def test_cpu_model_of_a_raspberry_pi_cpuinfo(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n"
                       "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    monkeypatch.setattr(machine, "CPUINFO", cpuinfo)
    assert machine.cpu_model() == "Raspberry Pi 4 Model B Rev 1.4"


def test_cpu_model_of_an_x86_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\n")
    monkeypatch.setattr(machine, "CPUINFO", cpuinfo)
    assert machine.cpu_model() == "AMD EPYC 7763 64-Core Processor"


def test_tail_keeps_the_figures_and_adds_machine_and_versions() -> None:
    tail = machine.with_machine({"ratio": 2.0}, libraries=("numpy", "no-such-distribution-x"))
    assert tail["ratio"] == 2.0
    assert tail["machine"]["cores"] >= 1
    assert tail["versions"]["menjin"] and tail["versions"]["numpy"]
    assert tail["versions"]["no-such-distribution-x"] is None
