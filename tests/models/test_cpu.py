"""CPU feature flags decide bf16: AMX-BF16 for the service's auto precision, any hardware bf16 for training."""
from apudae.models.cpu import cpu_computes_bf16, cpu_flags, cpu_has_amx_bf16


def _cpuinfo(tmp_path, name, flags):
    path = tmp_path / name
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


def test_flags_come_from_the_first_flags_line_and_a_missing_file_has_none(tmp_path):
    assert cpu_flags(_cpuinfo(tmp_path, "a", "fpu avx512f")) == {"fpu", "avx512f"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_amx_bf16_and_hardware_bf16_are_told_apart(tmp_path):
    amx = _cpuinfo(tmp_path, "amx", "fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8")
    avx = _cpuinfo(tmp_path, "avx", "fpu avx512f avx512_bf16")
    plain = _cpuinfo(tmp_path, "plain", "fpu avx512f avx512_vnni")
    assert cpu_has_amx_bf16(amx) and not cpu_has_amx_bf16(avx) and not cpu_has_amx_bf16(plain)
    assert cpu_computes_bf16(amx) and cpu_computes_bf16(avx) and not cpu_computes_bf16(plain)
    assert not cpu_computes_bf16(tmp_path / "missing")
