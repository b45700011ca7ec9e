"""Headless figures written atomically (kinova_policy_ros.core.figures)."""

from pathlib import Path
import struct
import subprocess
import sys

from kinova_policy_ros.core.figures import new_figure, save_figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
import pytest

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f'{path} is not a PNG'
    assert data[12:16] == b'IHDR'
    width, height = struct.unpack('>II', data[16:24])
    return width, height


def test_new_figure_is_an_agg_figure_of_the_given_size():
    fig = new_figure(3.0, 2.0)
    assert isinstance(fig.canvas, FigureCanvasAgg)
    assert tuple(fig.get_size_inches()) == (3.0, 2.0)


def test_no_pyplot_is_imported(tmp_path: Path):
    code = (
        'import sys\n'
        'from kinova_policy_ros.core.figures import new_figure, save_figure\n'
        'save_figure(new_figure(1.0, 1.0), sys.argv[1])\n'
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    out = tmp_path / 'a.png'
    proc = subprocess.run(
        [sys.executable, '-c', code, str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert _png_size(out) == (100, 100)


def test_save_figure_writes_a_png_and_leaves_no_temp_file(tmp_path: Path):
    fig = new_figure(3.0, 2.0)
    fig.add_subplot().plot([0, 1, 2], [1, 0, 1])
    out = save_figure(fig, tmp_path / 'plots' / 'loss.png')  # the folder is created
    assert out == tmp_path / 'plots' / 'loss.png'
    assert _png_size(out) == (300, 200)  # 100 dpi
    assert sorted(p.name for p in out.parent.iterdir()) == ['loss.png']


def test_save_figure_replaces_an_existing_file(tmp_path: Path):
    path = tmp_path / 'x.png'
    path.write_bytes(b'old')
    save_figure(new_figure(1.0, 1.0), path)
    assert _png_size(path) == (100, 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.png']


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch):
    path = tmp_path / 'x.png'
    path.write_bytes(b'old')
    fig = new_figure(1.0, 1.0)
    written = []

    def broken_savefig(target, **kwargs) -> None:
        Path(target).write_bytes(PNG_MAGIC)  # a partial file, then the disk is full
        written.append(Path(target).name)
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(fig, 'savefig', broken_savefig)
    with pytest.raises(OSError, match='No space left on device'):
        save_figure(fig, path)
    assert written == ['.x.tmp.png']  # it wrote a temp file next to the target, not the target
    assert path.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.png']
