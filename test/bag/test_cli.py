"""
Tests of the bag_to_npz command line (kinova_policy_ros.bag.cli).

Argument parsing, option loading and coercion, the summary table, exit codes and the worker
pool; the conversion itself is tested in test_convert.py / test_collect.py.
"""

from dataclasses import fields
import math
from pathlib import Path
import platform
import re
import subprocess
import sys

from kinova_policy_ros.bag.cli import (
    _coerce,
    BagResult,
    build_parser,
    convert_bags,
    load_options,
    main,
    reuse_freed_memory,
    summary_table,
)
from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.data.schema import load_episode
from kinova_policy_ros.testing import bag_synthetic as syn
import pytest


def test_parallel_workers_isolate_failures(tmp_path: Path) -> None:
    bags = []
    for name in ('w1', 'w2'):
        syn.write_bag(tmp_path / name, syn.SynthSpec(n_frames=5, storage='mcap'))
        bags.append(tmp_path / name)
    bags.append(tmp_path / 'missing_bag')
    opts = load_options(None, workers=2, progress=False)
    results = convert_bags(bags, tmp_path / 'o', opts)
    assert [r.ok for r in results] == [True, True, False]
    assert 'missing_bag: bag does not exist' in results[2].error
    assert sorted(p.name for p in (tmp_path / 'o').glob('*.npz')) == ['w1.npz', 'w2.npz']
    for r in results[:2]:
        assert r.report['frames']['kept'] == 5


def test_duplicate_output_names_are_refused(tmp_path: Path) -> None:
    for parent in ('a', 'b'):
        (tmp_path / parent).mkdir()
        syn.write_bag(tmp_path / parent / 'rec', syn.SynthSpec(n_frames=4))
    results = convert_bags(
        [tmp_path / 'a' / 'rec', tmp_path / 'b' / 'rec'],
        tmp_path / 'o',
        load_options(None, progress=False),
    )
    assert [r.ok for r in results] == [True, False]
    assert "output name 'rec' is also the name of" in results[1].error


def test_load_options_overrides_and_errors(tmp_path: Path) -> None:
    opts = load_options(None, resize='24x32', joint_names='a,b,c,d,e,f,g', stamp='bag')
    assert opts.resize == (24, 32) and opts.joint_names == tuple('abcdefg')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('rgb_topic: /x\nfancy: 1\n')
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown option 'fancy'"):
        load_options(bad)
    with pytest.raises(ConfigError, match=r"option 'resize' = '0x3'"):
        load_options(None, resize='0x3')
    with pytest.raises(ConfigError, match=r"option 'joint_names'.*7 distinct"):
        load_options(None, joint_names='a,b')
    assert main(['x', '--out', str(tmp_path), '--stamp', 'bag', '--max-joint-gap-s', '-1']) == 2


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    syn.write_bag(tmp_path / 'm', syn.SynthSpec(n_frames=4))
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'kinova_policy_ros.bag.cli',
            str(tmp_path / 'm'),
            '--out',
            str(tmp_path / 'o'),
            '--no-progress',
            '--no-compress',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'm.npz' in proc.stdout and (tmp_path / 'o' / 'm.npz').exists()
    assert math.isclose(
        float(load_episode(tmp_path / 'o' / 'm.npz').depth[0, 0, 1]), 0.501, rel_tol=1e-6
    )


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='mallopt is a glibc call')
def test_converter_processes_keep_freed_memory() -> None:
    # the CLI and its worker pool tune glibc malloc so frame-sized blocks are reused; on glibc
    # both mallopt calls must succeed (they return 0 for an unknown parameter or value)
    assert reuse_freed_memory() is True


# ----------------------------------------------------------------------------- _coerce


@pytest.mark.parametrize(
    ('name', 'value', 'want'),
    [
        ('rgb_topic', '/cam', '/cam'),  # str
        ('joint_names', 'a, b,c,d,e,f,g,', tuple('abcdefg')),  # tuple[str, ...] from a string
        ('joint_names', [' a', 'b', 'c', 'd', 'e', 'f', 'g'], tuple('abcdefg')),  # from a list
        ('resize', '24X32', (24, 32)),  # tuple[int, int] | None from HxW
        ('resize', [24, '32'], (24, 32)),  # from a list
        ('resize', None, None),  # optional
        ('depth_tolerance_s', 0.02, 0.02),  # float | None
        ('depth_tolerance_s', None, None),
        ('max_joint_gap_s', 1, 1.0),  # float from an int
        ('max_joint_gap_s', '0.25', 0.25),  # from a string
        ('min_frames', 3, 3),  # int
        ('min_frames', 4.0, 4),  # a whole float
        ('workers', ' 2 ', 2),  # from a string
        ('overwrite', True, True),  # bool
        ('stamp', 'bag', 'bag'),  # Literal
    ],
)
def test_coerce_converts_to_the_declared_type(name: str, value: object, want: object) -> None:
    got = _coerce(name, value, 'f.yaml')
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    ('name', 'value', 'why'),
    [
        ('rgb_topic', 5, 'expected a string, got int'),
        ('rgb_topic', None, r'a value is required \(null is not allowed here\)'),
        ('joint_names', 'a,b', 'must be 7 distinct joint names'),
        ('joint_names', 'a,a,b,c,d,e,f', 'must be 7 distinct joint names'),
        ('joint_names', 7, 'expected a list or a string, got int'),
        ('joint_names', ['a', 2, 'c', 'd', 'e', 'f', 'g'], 'expected a string, got int'),
        ('resize', '0x3', 'must be a positive height and width'),
        ('resize', '24x32x3', r'expected 2 values \(NxN\), got 3'),
        ('resize', 'axb', 'expected an integer'),
        ('depth_tolerance_s', -0.1, r'must be > 0'),
        ('depth_tolerance_s', 'soon', 'expected a number'),
        ('depth_tolerance_s', True, 'expected a number, got a boolean'),
        ('depth_tolerance_s', [1.0], 'expected a number'),
        ('workers', 0, 'must be >= 1'),
        ('workers', 2.5, 'expected an integer'),
        ('workers', False, 'expected an integer, got a boolean'),
        ('compress', 'yes', 'expected true or false'),
        ('stamp', 'wall', "expected one of 'header', 'bag'"),
    ],
)
def test_coerce_names_file_option_and_value(name: str, value: object, why: str) -> None:
    with pytest.raises(ConfigError, match=rf'^f\.yaml: option {name!r} = .*: {why}'):
        _coerce(name, value, 'f.yaml')
    with pytest.raises(ConfigError, match=rf'= {re.escape(repr(value))}: '):
        _coerce(name, value, 'f.yaml')


def test_coerce_unknown_option_and_unknown_type(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^cli: unknown option 'fancy' \(known: \["):
        _coerce('fancy', 1, 'cli')
    from kinova_policy_ros.bag import cli

    monkeypatch.setattr(cli, '_option_types', lambda: {'x': complex, 'y': int | str})
    unknown = r"^f: option 'x' = 1: no conversion to <class 'complex'>"
    with pytest.raises(ConfigError, match=unknown):
        _coerce('x', 1, 'f')
    with pytest.raises(ConfigError, match=r"^f: option 'y' = 1: cannot convert to int \| str"):
        _coerce('y', 1, 'f')


def test_coerce_keeps_every_default() -> None:
    # every field's declared type is one _coerce knows, and a default converts to itself
    defaults = ConvertOptions()
    for f in fields(ConvertOptions):
        value = getattr(defaults, f.name)
        assert _coerce(f.name, value, 'defaults') == value, f.name


# ----------------------------------------------------------------------------- load_options


def test_load_options_reads_yaml_and_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / 'c.yaml'
    cfg.write_text('resize: [24, 32]\nworkers: 3\nstamp: bag\n')
    opts = load_options(cfg, workers=None, min_frames=5)  # None overrides are ignored
    assert (opts.resize, opts.workers, opts.stamp, opts.min_frames) == ((24, 32), 3, 'bag', 5)
    cfg.write_text('workers: many\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(cfg))}: option 'workers' = 'many'"):
        load_options(cfg)
    cfg.write_text('- a\n- b\n')
    with pytest.raises(ConfigError, match=r'c\.yaml: expected a mapping of options, got list'):
        load_options(cfg)
    cfg.write_text('a: [\n')
    with pytest.raises(ConfigError, match=r'c\.yaml: cannot read converter config'):
        load_options(cfg)
    with pytest.raises(ConfigError, match=r'nope\.yaml: cannot read converter config'):
        load_options(tmp_path / 'nope.yaml')
    with pytest.raises(ConfigError, match=r"^unknown option 'fancy'$"):
        load_options(None, fancy=1)
    with pytest.raises(ConfigError, match=r"^command line: option 'min_frames' = 0: must be"):
        load_options(None, min_frames=0)


# ----------------------------------------------------------------------------- parser, table


def test_parser_maps_flags_to_options() -> None:
    args = vars(
        build_parser().parse_args(
            ['a', 'b', '--out', 'o', '--split-on-gap', '0.5', '--no-progress', '--no-compress',
             '--resize', '24x32', '--overwrite']
        )
    )
    assert args.pop('bags') == ['a', 'b'] and args.pop('out') == 'o'
    assert args.pop('config') is None
    assert {k: v for k, v in args.items() if v is not None} == {
        'split_on_gap_s': 0.5,
        'progress': False,
        'compress': False,
        'resize': '24x32',
        'overwrite': True,
    }
    names = {f.name for f in fields(ConvertOptions)}
    assert set(args) == names  # every option has a flag, and every flag is an option
    opts = load_options(None, **args)
    assert (opts.split_on_gap_s, opts.progress, opts.compress, opts.resize) == (
        0.5, False, False, (24, 32),
    )


def test_summary_table_rows() -> None:
    report = {
        'frames': {
            'kept': 19,
            'dropped': {'no_depth': 1, 'joint_gap': 2, 'no_joint_state': 0,
                        'duplicate_stamp': 3, 'short_segment': 4},
        },
        'time': {'start_ns': 0, 'end_ns': 0, 'duration_s': 1.234, 'rate_hz': 29.97},
    }
    ok = BagResult('/bags/rec_a', True, ['/o/rec_a.npz'], report)  # type: ignore[arg-type]
    bad = BagResult('/bags/rec_bb', False, error='/bags/rec_bb: broken')
    lines = summary_table([ok, bad]).splitlines()
    assert lines[0].split() == [
        'bag', 'status', 'episodes', 'kept', 'dropped', 'span', 's', 'rate', 'Hz', 'output',
    ]
    assert lines[1].split() == ['rec_a', 'ok', '1', '19', '10', '1.23', '30.0', 'rec_a.npz']
    assert lines[2].split() == ['rec_bb', 'FAILED', '0', '/bags/rec_bb:', 'broken']
    assert lines[1].index('ok') == lines[2].index('FAILED')  # aligned columns


# ----------------------------------------------------------------------------- exit codes


def test_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    syn.write_bag(tmp_path / 'good', syn.SynthSpec(n_frames=4))
    out = tmp_path / 'o'
    assert main([str(tmp_path / 'good'), '--out', str(out), '--no-progress']) == 0
    captured = capsys.readouterr()
    assert 'good.npz' in captured.out and captured.err == ''
    missing = tmp_path / 'missing'
    rc = main([str(missing), str(tmp_path / 'good'), '--out', str(out), '--no-progress',
               '--overwrite'])
    assert rc == 1
    err = capsys.readouterr().err
    assert f'bag_to_npz: error: {missing}: bag does not exist' in err
    assert 'bag_to_npz: 1 of 2 bags failed' in err
    assert sorted(p.name for p in out.iterdir()) == ['good.json', 'good.npz']
    assert main(['x', '--out', str(out), '--workers', '0']) == 2
    assert "bag_to_npz: error: command line: option 'workers' = 0: must be >= 1" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as usage:
        main(['--out', str(out)])  # no bag: argparse's usage error
    assert usage.value.code == 2


def test_default_config_is_the_source_trees_in_a_checkout() -> None:
    """In a source checkout the converter's defaults come from the repository's config/."""
    from kinova_policy_ros.bag.cli import default_config_path

    repo_config = Path(__file__).resolve().parents[2] / 'config' / 'bag_to_npz.yaml'
    assert default_config_path() == repo_config


@pytest.mark.parametrize('workers', ['1', '2'])
def test_partial_split_warning_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    bag = tmp_path / 'rec'
    syn.write_bag(bag, syn.SynthSpec(n_frames=9, splits=3))
    (bag / 'metadata.yaml').unlink()
    (bag / 'rec_1.db3').unlink()
    syn.write_bag(tmp_path / 'good', syn.SynthSpec(n_frames=4))
    args = [str(bag / 'rec_0.db3'), str(tmp_path / 'good'), '--out', str(tmp_path / 'o'),
            '--no-progress', '--workers', workers]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "splits present ['rec_0.db3', 'rec_2.db3'], missing ['rec_1.db3']" in err
    assert main([*args, '--allow-partial-split', '--overwrite']) == 0
    captured = capsys.readouterr()
    assert 'rec.npz' in captured.out
    warned = [line for line in captured.err.splitlines() if line.startswith('bag_to_npz: warn')]
    assert len(warned) == 1 and "missing ['rec_1.db3']" in warned[0]  # once, not per process
