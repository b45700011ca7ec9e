"""core/allocator.py: freed memory stays in the heap (glibc), nothing changes elsewhere."""

import ctypes
import subprocess
import sys
import textwrap
from types import SimpleNamespace

from kinova_policy_ros.core import allocator
import pytest

GLIBC = allocator._glibc() is not None

# A fresh interpreter allocates and frees a 20 MiB block, then reports how many free bytes the
# heap holds (glibc mallinfo2().fordblks): kept for reuse, or handed back to the kernel.
_CHILD = textwrap.dedent(
    """
    import ctypes, sys
    from kinova_policy_ros.core.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks',
            'uordblks', 'fordblks', 'keepcost')]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == 'keep':
        assert keep_freed_memory()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(20 * 1024 * 1024)
    ctypes.memset(block, 1, 20 * 1024 * 1024)
    libc.free(block)
    print(libc.mallinfo2().fordblks)
    """
)


def _free_heap_bytes_after_a_20mib_block(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, '-c', _CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason='glibc only (mallopt, mallinfo2)')
def test_a_freed_block_stays_in_the_heap_only_with_the_setting() -> None:
    if not hasattr(ctypes.CDLL(None), 'mallinfo2'):
        pytest.skip('glibc < 2.33 has no mallinfo2')
    assert _free_heap_bytes_after_a_20mib_block('keep') >= 20 * 1024 * 1024
    assert _free_heap_bytes_after_a_20mib_block('default') < 20 * 1024 * 1024


@pytest.mark.skipif(not GLIBC, reason='glibc only (mallopt)')
def test_applying_twice_is_harmless() -> None:
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True


def test_nothing_changes_on_another_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, 'platform', 'darwin')
    assert allocator._glibc() is None
    assert allocator.keep_freed_memory() is False


def test_a_refused_setting_reports_false(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(param: int, value: int) -> int:
        return 0  # what mallopt answers for a value it does not take

    monkeypatch.setattr(allocator, '_glibc', lambda: SimpleNamespace(mallopt=refuse))
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'trim_threshold': 0}, r'trim_threshold must be > 0 bytes, got 0'),
        ({'mmap_threshold': 0}, r'mmap_threshold must be in \(0, 33554432\] bytes, got 0'),
        ({'mmap_threshold': 64 << 20}, r'mmap_threshold .* got 67108864'),
    ],
)
def test_bad_thresholds_are_named(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        allocator.keep_freed_memory(**kwargs)
