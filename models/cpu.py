"""What the CPU advertises: the feature flags of /proc/cpuinfo (Linux), read once per call."""
from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first ``flags`` line of ``cpuinfo`` as a set (e.g. {"avx512f", "amx_bf16"}); empty where there is none."""
    try:
        with open(cpuinfo) as lines:
            flags = next((line for line in lines if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(flags.partition(":")[2].split())


def cpu_has_amx_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU advertises AMX with bf16 tiles (``amx_bf16``)."""
    return "amx_bf16" in cpu_flags(cpuinfo)


def cpu_computes_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU has bf16 arithmetic in hardware (AMX-BF16 or AVX512-BF16); elsewhere oneDNN emulates
    bf16, and bf16 autocast is slower than fp32."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags(cpuinfo))
