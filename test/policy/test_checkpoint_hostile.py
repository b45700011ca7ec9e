"""
A checkpoint from someone else is data, not code: hostile ``config.json`` and weights files.

Huge, negative, non-finite and wrongly typed fields are refused with a :class:`CheckpointError`
naming the field before anything of the claimed size is allocated; ``config.json`` that is not
JSON (binary, a 5000-digit integer, a nesting 100 000 deep, a list) is refused the same way;
a config whose model is larger than its weights is refused from the safetensors header, the
model laid out on the meta device only. No loader in the package can unpickle.
"""

import json
from pathlib import Path
import re
import shutil
import tracemalloc

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from kinova_policy_ros.core.errors import CheckpointError
from kinova_policy_ros.policy import checkpoint as ckpt_mod
from kinova_policy_ros.policy.checkpoint import CONFIG_FILE, load_checkpoint, MODEL_FILE
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import pytest
import torch

PACKAGE = Path(ckpt_mod.__file__).resolve().parents[1]
SMALL = {'d_model': 32, 'dim_feedforward': 64, 'img_feat_dim': 16, 'q_feat_dim': 8}
# Hostile edits of config.json and the error each must give (it names the field).
HOSTILE = [
    (('model', 'd_model'), 10**9, r'model\.d_model: must be <= 8192, got 1000000000'),
    (('model', 'dim_feedforward'), 10**9, r'model\.dim_feedforward: must be <= 8192'),
    (('model', 'num_encoder_layers'), 10**6, r'model\.num_encoder_layers: must be <= 64'),
    (('model', 'conv_channels'), [10**6], r'model\.conv_channels: must be at most 64'),
    (('model', 'max_pred_horizon'), 10**9, r'model\.max_pred_horizon: must be <= 4096'),
    (('model', 'num_joints'), 10**9, r'model\.num_joints: must be <= 64'),
    (('model', 'd_model'), -32, r'model\.d_model: must be >= 1, got -32'),
    (('model', 'd_model'), '32', r"model\.d_model: expected an integer, got '32'"),
    (('model', 'keypoint_beta'), float('inf'), r'model\.keypoint_beta: must be > 0 and finite'),
    (('data', 'obs_horizon'), 10**9, r'data\.obs_horizon: must be <= 4096'),
    (('data', 'resize_hw'), [10**6, 10**6], r'data\.resize_hw: must be \[H, W\] with H, W <='),
    (('data', 'max_depth_m'), float('inf'), r'data\.max_depth_m: must be > 0 and finite'),
    (('stats', 'q_min'), [float('nan')] * 7, r'stats\.q_min: expected a finite 1-D array'),
    (('dt',), float('inf'), r"field 'dt' must be a positive number, got inf"),
    (('dt',), True, r"field 'dt' must be a positive number, got True"),
    (('step',), 'x', r"field 'step' must be an integer >= 0, got 'x'"),
    (('joint_names',), 5, r"field 'joint_names' must be a list of names, got 5"),
]
NOT_JSON = [
    (b'\xff\xfe\x00', 'invalid JSON'),
    (b'[' * 100_000, 'invalid JSON'),
    (b'{"format_version": 1' + b'0' * 5000 + b'}', 'invalid JSON'),
    (b'[]', 'expected a JSON object, got list'),
    (b'"format_version model data stats joint_names dt"', 'expected a JSON object, got str'),
]


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_checkpoint(tmp_path_factory.mktemp('hostile') / 'ckpt', **SMALL)


def _copy(ckpt: Path, dst: Path, config: bytes) -> Path:
    shutil.copytree(ckpt, dst)
    (dst / CONFIG_FILE).write_bytes(config)
    return dst


def _edited(ckpt: Path, where: tuple[str, ...], value: object) -> bytes:
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    node = config
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return json.dumps(config).encode()


def _refused_without_allocating(path: Path, message: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f'peak {peak} bytes while refusing {path / CONFIG_FILE}'


@pytest.mark.parametrize(('where', 'value', 'message'), HOSTILE)
def test_hostile_field_is_refused_by_name_before_allocating(
    ckpt: Path, tmp_path: Path, where: tuple[str, ...], value: object, message: str
) -> None:
    """Regression: d_model=1e9 reached torch's allocator; step='x' raised ValueError."""
    path = _copy(ckpt, tmp_path / 'c', _edited(ckpt, where, value))
    _refused_without_allocating(path, re.escape(str(path / CONFIG_FILE)) + '.*' + message)


@pytest.mark.parametrize(('content', 'message'), NOT_JSON)
def test_config_that_is_not_a_json_object_is_refused(
    ckpt: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    """Regression: binary, deep and huge-integer files escaped as Unicode/Recursion/ValueError."""
    path = _copy(ckpt, tmp_path / 'c', content)
    _refused_without_allocating(path, message)


def test_model_larger_than_its_weights_is_refused_from_the_header(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config within every bound but asking for ~0.5 GB of weights the file does not hold."""
    big = json.loads((ckpt / CONFIG_FILE).read_text())
    big['model'].update(d_model=2048, dim_feedforward=2048)
    path = _copy(ckpt, tmp_path / 'c', json.dumps(big).encode())
    built_on: list[str] = []
    real = ckpt_mod.TransformerJointGripperNoDQ

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            built_on.append(torch.empty(0).device.type)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ckpt_mod, 'TransformerJointGripperNoDQ', Spy)
    with pytest.raises(CheckpointError, match=rf'{MODEL_FILE}: tensor .* has shape .* needs'):
        load_checkpoint(path)
    assert built_on == ['meta']  # laid out without memory, never built for real


def test_weights_file_that_is_a_pickle_is_refused(ckpt: Path, tmp_path: Path) -> None:
    path = _copy(ckpt, tmp_path / 'c', (ckpt / CONFIG_FILE).read_bytes())
    torch.save({'x': torch.ones(2)}, path / MODEL_FILE)  # a zip of pickles
    with pytest.raises(CheckpointError, match=rf'{MODEL_FILE}: cannot read weights'):
        load_checkpoint(path)


def test_no_loader_in_the_package_can_unpickle() -> None:
    """No pickle, torch.load, yaml.load or np.load(allow_pickle=True); np.load defaults to off."""
    unsafe = re.compile(
        r'import pickle|from pickle|pickle\.loads?\(|torch\.load\(|yaml\.load\(|'
        r'allow_pickle\s*=\s*True|weights_only\s*=\s*False|yaml\.unsafe_load|marshal\.loads?\('
    )
    hits = [
        f'{py.relative_to(PACKAGE)}:{n}'
        for py in sorted(PACKAGE.rglob('*.py'))
        for n, line in enumerate(py.read_text().splitlines(), 1)
        if unsafe.search(line)
    ]
    assert hits == []


def test_np_load_refuses_a_pickled_array_by_default(tmp_path: Path) -> None:
    """What the package's np.load calls rely on (explicit or default allow_pickle=False)."""
    np.save(tmp_path / 'obj.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match='allow_pickle=False'):
        np.load(tmp_path / 'obj.npy')


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=6),
    st.lists(st.integers(-5, 10**7), max_size=4),
)


def _leaves(node: object, where: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*where, k))]
    if isinstance(node, list) and node and isinstance(node[0], list | dict):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*where, i))]
    return [where]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_mutated_config_loads_or_is_refused(ckpt: Path, tmp_path: Path, data: st.DataObject):
    """Replace 1-3 values of config.json with any JSON value: a model or a CheckpointError."""
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    paths = _leaves(config)
    for where in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        node = config
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = data.draw(JSON_LEAF)
    target = tmp_path / f'c{len(list(tmp_path.iterdir()))}'
    path = _copy(ckpt, target, json.dumps(config).encode())
    try:
        model, info = load_checkpoint(path)
    except CheckpointError as err:
        assert str(path / CONFIG_FILE) in str(err) or str(path / MODEL_FILE) in str(err)
    else:
        assert info.model.num_joints == 7 and not model.training
    finally:
        shutil.rmtree(target)
