"""The malloc settings every apudae process applies (service/allocator.py)."""
import ctypes.util
import platform

import pytest

from apudae.service import allocator


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_takes_every_setting(monkeypatch):
    for name in allocator.OPERATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert ctypes.util.find_library("c") and allocator.tune_allocator() is True


@pytest.mark.parametrize("variable", allocator.OPERATOR_VARIABLES)
def test_the_operators_own_malloc_variables_win(monkeypatch, variable):
    monkeypatch.setenv(variable, "2")
    assert allocator.tune_allocator() is False
