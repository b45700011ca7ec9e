"""Progress lines for log files, a live bar on a terminal (kinova_policy_ros.core.progress)."""

import io
import re

from kinova_policy_ros.core.progress import LineProgress, progress
import pytest
from tqdm import tqdm

LINE = re.compile(
    r'^(?P<desc>\w+): +(?P<pct>\d+)% (?P<n>\d+)/(?P<total>\d+) '
    r'\[\d+\.\d s, \d+\.\d (?P<unit>\w+)/s\](?: (?P<postfix>.+))?$'
)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(out: io.StringIO) -> list[re.Match[str]]:
    text = out.getvalue()
    assert '\r' not in text
    assert text == '' or text.endswith('\n')
    matches = [LINE.match(line) for line in text.splitlines()]
    assert all(matches), text
    return matches  # type: ignore[return-value]


def _run(total: int, step: int = 1, **kwargs: object) -> list[re.Match[str]]:
    out = io.StringIO()
    with LineProgress(total, 'train', file=out, **kwargs) as bar:  # type: ignore[arg-type]
        for _ in range(0, total - bar.n, step):
            bar.update(min(step, total - bar.n))
    return _lines(out)


def test_a_line_every_5_percent():
    lines = _run(100)
    assert [int(m['pct']) for m in lines] == list(range(5, 101, 5))
    assert [int(m['n']) for m in lines] == list(range(5, 101, 5))
    assert {m['total'] for m in lines} == {'100'} and {m['unit'] for m in lines} == {'it'}


@pytest.mark.parametrize('total', [*range(0, 130), 999, 1001, 12345, 10**6 + 7])
def test_at_most_21_lines_for_any_total(total: int):
    lines = _run(total, step=max(1, total // 5000))
    assert len(lines) <= 21
    if total:
        assert (int(lines[-1]['n']), int(lines[-1]['pct'])) == (total, 100)  # the end is shown
        assert len(lines) >= min(total, 20)
        ns = [int(m['n']) for m in lines]
        assert ns == sorted(set(ns))  # each line reports progress
    else:
        assert lines == []


def test_big_updates_print_one_line_each():
    lines = _run(1000, step=333)
    assert [int(m['n']) for m in lines] == [333, 666, 999, 1000]


def test_other_percentages_and_initial():
    assert [int(m['pct']) for m in _run(100, every_percent=25)] == [25, 50, 75, 100]
    assert [int(m['n']) for m in _run(100, initial=50)] == list(range(55, 101, 5))


def test_nothing_is_printed_when_disabled():
    out = io.StringIO()
    with LineProgress(100, 'x', file=out, disable=True) as bar:
        for _ in range(100):
            bar.update()
    assert out.getvalue() == '' and bar.lines == 0


def test_postfix_ends_the_following_lines():
    out = io.StringIO()
    bar = LineProgress(4, 'train', file=out, every_percent=50, unit='step')
    bar.update(2)
    bar.set_postfix({'loss': 0.25}, lr='1e-4')
    bar.update(2)
    bar.close()
    lines = _lines(out)
    assert [(m['n'], m['postfix'], m['unit']) for m in lines] == [
        ('2', None, 'step'),
        ('4', 'loss=0.25 lr=1e-4', 'step'),
    ]


def test_close_prints_the_last_line_once():
    out = io.StringIO()
    bar = LineProgress(100, 'x', file=out)
    bar.update(3)
    bar.update(4)  # 5 % passed: one line, at 7
    bar.update(1)
    bar.close()  # the final 8/100
    bar.close()
    assert [m['n'] for m in _lines(out)] == ['7', '8'] and bar.lines == 2
    out = io.StringIO()
    with LineProgress(10, 'x', file=out) as bar:
        bar.update(10)
    assert [m['n'] for m in _lines(out)] == ['10']  # close adds nothing


def test_default_stream_is_stderr(capsys):
    with LineProgress(2, 'x', every_percent=50) as bar:
        bar.update(2)
    captured = capsys.readouterr()
    assert captured.out == '' and LINE.match(captured.err.strip())


def test_progress_picks_lines_for_a_log_file_and_tqdm_for_a_terminal():
    log = io.StringIO()
    bar = progress(40, 'convert', file=log, every_percent=50, unit='frame', initial=20)
    assert isinstance(bar, LineProgress)
    bar.update(20)
    bar.close()
    assert [(m['desc'], m['n'], m['unit']) for m in _lines(log)] == [('convert', '40', 'frame')]
    quiet = io.StringIO()
    off = progress(10, 'x', file=quiet, disable=True)
    off.update(10)
    off.close()
    assert quiet.getvalue() == ''
    tty = Tty()
    live = progress(10, 'x', file=tty, mininterval=0)
    assert isinstance(live, tqdm)
    live.update(10)
    live.close()
    assert '\r' in tty.getvalue()  # tqdm redraws its bar in place


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'total': -1}, r'LineProgress: total must be >= 0, got -1'),
        ({'every_percent': 0}, r'every_percent must be in \(0, 100\], got 0'),
        ({'every_percent': 100.5}, r'every_percent must be in \(0, 100\], got 100.5'),
        ({'every_percent': -5}, r'every_percent must be in \(0, 100\], got -5'),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    args = {'total': 10, 'desc': 'x', **kwargs}
    with pytest.raises(ValueError, match=message):
        LineProgress(**args)
    with pytest.raises(ValueError, match=message):
        progress(**args, file=io.StringIO())


def test_an_unknown_total_prints_only_the_final_line():
    out = io.StringIO()
    with LineProgress(0, 'x', file=out) as bar:
        for _ in range(50):
            bar.update()
    assert [(m['n'], m['pct']) for m in _lines(out)] == [('50', '100')]
