"""The learning curve's results (learning_curve_report): rates, Wilson intervals, the table."""

import json
import math
from pathlib import Path

from helpers import curve_results
from kinova_policy_ros import learning_curve_report as lcr
from kinova_policy_ros.sim.eval_metrics import wilson_interval
import pytest


def test_aggregate_counts_per_seed_and_pooled():
    rows = lcr.aggregate(curve_results())
    assert [r['demonstrations'] for r in rows] == [50, 100]
    assert [[s['train_seed'] for s in r['per_seed']] for r in rows] == [[0, 1], [0, 1]]
    fifty, hundred = rows
    assert [s['success']['3cm']['successes'] for s in fifty['per_seed']] == [1, 0]
    assert [s['success']['5cm']['successes'] for s in fifty['per_seed']] == [1, 1]
    assert [s['success']['3cm']['successes'] for s in hundred['per_seed']] == [3, 2]
    assert [s['success']['5cm']['successes'] for s in hundred['per_seed']] == [4, 3]
    pooled = hundred['pooled']
    assert pooled['episodes'] == 8
    assert pooled['success']['3cm'] == {
        'successes': 5,
        'rate': 5 / 8,
        'ci': list(wilson_interval(5, 8)),
    }
    assert pooled['success']['5cm']['rate'] == 7 / 8
    assert fifty['pooled']['success']['3cm']['rate'] == 1 / 8
    # medians: of 8 pooled distances, and of one seed's 4
    assert math.isclose(pooled['median_final_distance'], (0.02 + 0.02) / 2)
    assert math.isclose(fifty['pooled']['median_final_distance'], (0.10 + 0.20) / 2)
    assert math.isclose(fifty['per_seed'][0]['median_final_distance'], (0.06 + 0.30) / 2)


def test_markdown_table_has_one_row_per_count():
    table = lcr.markdown_table(lcr.aggregate(curve_results()), 'curve')
    lines = table.splitlines()
    assert lines[0] == '# curve'
    assert lines[2].startswith('| demonstrations | training seeds | episodes | success ≤ 3 cm')
    lo, hi = wilson_interval(5, 8)
    assert lines[4] == (
        '| 50 | 2 | 8 | 12 % [2, 47] | 25 % / 0 % | 25 % [7, 59] | 25 % / 25 % | 15.0 cm |'
    )
    assert lines[5].startswith(f'| 100 | 2 | 8 | 62 % [{100 * lo:.0f}, {100 * hi:.0f}] |')
    assert lines[5].endswith('| 2.0 cm |')
    assert len(lines) == 6


def test_pct_and_json_written_whole(tmp_path: Path):
    assert lcr.pct(0.625) == '62 %' and lcr.pct(1.0) == '100 %'
    path = lcr.write_json(tmp_path / 'x.json', {'a': [1, 2]})
    assert json.loads(path.read_text()) == {'a': [1, 2]}
    with pytest.raises(ValueError):
        lcr.write_json(tmp_path / 'nan.json', {'a': math.nan})
    assert not (tmp_path / 'nan.json').exists()
