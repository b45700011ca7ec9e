"""
The checkpoint directory format (no pickle anywhere).

A checkpoint directory holds:

- ``model.safetensors`` — the weights to run (the EMA weights when training with EMA);
- ``config.json`` — ``format_version``, ``model`` and ``data`` configs, normalization ``stats``,
  ``joint_names``, the frame period ``dt`` (s), ``step``, the camera ``geometry`` of the
  training data (:class:`~kinova_policy_ros.data.preprocess.StreamGeometry`, absent in older
  checkpoints: unknown) and metrics: everything the online node needs, it never reads the
  dataset;
- optionally ``training_state.safetensors`` + ``training_state.json`` — raw weights,
  optimizer, scheduler, EMA and RNG state for an exact resume (see ``train.py``).

Directories are written under a temporary name and renamed, so a crash never leaves a
checkpoint that looks complete but is not.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import shutil
import tempfile

from kinova_policy_ros.core.config import DataConfig, from_dict, ModelConfig, to_dict
from kinova_policy_ros.core.errors import CheckpointError, ConfigError
from kinova_policy_ros.data.preprocess import JointStats, StreamGeometry
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
from safetensors import safe_open, SafetensorError
from safetensors.torch import load_file, save_file
import torch

FORMAT_VERSION = 1
MODEL_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
STATE_TENSORS_FILE = 'training_state.safetensors'
STATE_JSON_FILE = 'training_state.json'


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``config.json`` says about a checkpoint."""

    path: Path
    model: ModelConfig
    data: DataConfig
    stats: JointStats
    joint_names: tuple[str, ...]
    dt: float
    step: int
    extra: dict[str, object]
    #: The camera streams of the training data; None = unknown (a checkpoint from before).
    geometry: StreamGeometry | None = None

    def to_json(self) -> dict[str, object]:
        """Return the content of ``config.json``: the fields, then the ``extra`` ones."""
        geometry = {} if self.geometry is None else {'geometry': self.geometry.to_dict()}
        return {
            'format_version': FORMAT_VERSION,
            'model_class': TransformerJointGripperNoDQ.__name__,
            'model': to_dict(self.model),
            'data': to_dict(self.data),
            'stats': self.stats.to_dict(),
            'joint_names': list(self.joint_names),
            'dt': self.dt,
            'step': self.step,
            **geometry,
            **self.extra,
        }


def _write_json_atomic(path: Path, obj: object) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    out_dir: str | os.PathLike[str],
    model: torch.nn.Module,
    info: CheckpointInfo,
    training_tensors: Mapping[str, torch.Tensor] | None = None,
    training_json: Mapping[str, object] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (build under a temp name, then rename)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / MODEL_FILE), metadata={'format_version': '1'})
        _write_json_atomic(tmp / CONFIG_FILE, info.to_json())
        if training_tensors is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in training_tensors.items()},
                str(tmp / STATE_TENSORS_FILE),
            )
        if training_json is not None:
            _write_json_atomic(tmp / STATE_JSON_FILE, dict(training_json))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read and validate ``config.json``; errors name the file and the field."""
    root = Path(path)
    cfg_path = root / CONFIG_FILE
    if not root.is_dir():
        raise CheckpointError(f'{root}: checkpoint directory does not exist')
    try:
        raw = json.loads(cfg_path.read_text())
    except OSError as err:
        raise CheckpointError(f'{cfg_path}: cannot read checkpoint config: {err}') from err
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, a
        # 5000-digit integer; a thousands-deep nesting
        raise CheckpointError(f'{cfg_path}: invalid JSON: {err}') from err
    if not isinstance(raw, dict):
        raise CheckpointError(f'{cfg_path}: expected a JSON object, got {type(raw).__name__}')
    for key in ('format_version', 'model', 'data', 'stats', 'joint_names', 'dt'):
        if key not in raw:
            raise CheckpointError(f'{cfg_path}: missing field {key!r}')
    if raw['format_version'] != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: field 'format_version' is {raw['format_version']!r}, "
            f'this code reads {FORMAT_VERSION}'
        )
    data_raw = raw['data']
    if isinstance(data_raw, dict) and 'fit' not in data_raw:
        # Written before data.fit existed: every stream was resized whole (stretched).
        data_raw = {**data_raw, 'fit': 'stretch'}
    try:
        model_cfg = from_dict(ModelConfig, raw['model'], prefix='model')
        data_cfg = from_dict(DataConfig, data_raw, prefix='data')
    except ConfigError as err:
        raise CheckpointError(f'{cfg_path}: {err}') from err
    try:
        stats = JointStats.from_dict(raw['stats'], f'{cfg_path}: stats')
    except (ValueError, TypeError) as err:  # ConfigError is a ValueError
        raise CheckpointError(f"{cfg_path}: field 'stats': {err}") from err
    if not isinstance(raw['joint_names'], list) or not all(
        isinstance(n, str) for n in raw['joint_names']
    ):
        raise CheckpointError(
            f"{cfg_path}: field 'joint_names' must be a list of names, got {raw['joint_names']!r}"
        )
    names = tuple(raw['joint_names'])
    if len(names) != model_cfg.num_joints or len(set(names)) != len(names):
        raise CheckpointError(
            f"{cfg_path}: field 'joint_names' must be {model_cfg.num_joints} unique names, "
            f'got {list(names)}'
        )
    if stats.q_min.shape[0] != model_cfg.num_joints:
        raise CheckpointError(f"{cfg_path}: field 'stats' has {stats.q_min.shape[0]} joints")
    dt = raw['dt']
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not 0 < dt < math.inf:
        raise CheckpointError(f"{cfg_path}: field 'dt' must be a positive number, got {dt!r}")
    step = raw.get('step', 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{cfg_path}: field 'step' must be an integer >= 0, got {step!r}")
    geometry = None
    if raw.get('geometry') is not None:
        if not isinstance(raw['geometry'], dict):
            raise CheckpointError(f"{cfg_path}: field 'geometry' must be a mapping")
        geometry = StreamGeometry.from_dict(raw['geometry'], f'{cfg_path}: geometry')
    known = {'format_version', 'model_class', 'model', 'data', 'stats', 'joint_names', 'dt'}
    extra = {k: v for k, v in raw.items() if k not in known | {'step', 'geometry'}}
    return CheckpointInfo(
        root,
        model_cfg,
        data_cfg,
        stats,
        names,
        float(dt),
        step,
        extra,
        geometry,
    )


def _check_tensors(
    file: Path, found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]
) -> None:
    """Name the first tensor missing from ``found``, of another shape, or not expected."""
    for key, shape in expected.items():
        if key not in found:
            raise CheckpointError(f'{file}: missing tensor {key!r}')
        if list(found[key]) != list(shape):
            raise CheckpointError(
                f'{file}: tensor {key!r} has shape {list(found[key])}, the model config '
                f'needs {list(shape)}'
            )
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise CheckpointError(f'{file}: unexpected tensor {unexpected[0]!r}')


def check_weight_shapes(path: Path, info: CheckpointInfo) -> None:
    """
    Check the tensor shapes in the header of ``model.safetensors`` against ``info.model``.

    The model is laid out on the meta device (no memory) and the file's header read without its
    data, so a config that asks for a model larger than its weights is refused before anything
    of that size is allocated.
    """
    file = path / MODEL_FILE
    with torch.device('meta'):
        skeleton = TransformerJointGripperNoDQ(info.model, obs_horizon=info.data.obs_horizon)
    expected = {k: list(v.shape) for k, v in skeleton.state_dict().items()}
    try:
        with safe_open(str(file), framework='pt') as f:
            found = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f'{file}: cannot read weights: {err}') from err
    _check_tensors(file, found, expected)


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load ``model.safetensors`` into ``model``, naming any missing or mismatched tensor."""
    file = path / MODEL_FILE
    try:
        tensors = load_file(str(file))
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f'{file}: cannot read weights: {err}') from err
    _check_tensors(
        file,
        {k: list(v.shape) for k, v in tensors.items()},
        {k: list(v.shape) for k, v in model.state_dict().items()},
    )
    model.load_state_dict(tensors)


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = 'cpu'
) -> tuple[TransformerJointGripperNoDQ, CheckpointInfo]:
    """Build the model from ``config.json``, load its weights, move it to ``device`` (eval)."""
    info = read_checkpoint_info(path)
    check_weight_shapes(info.path, info)  # before the model is allocated
    model = TransformerJointGripperNoDQ(info.model, obs_horizon=info.data.obs_horizon)
    load_weights(info.path, model)
    try:
        model.set_joint_normalization(info.stats.q.center, info.stats.q.scale, info.joint_names)
    except ValueError as exc:
        raise CheckpointError(f'{info.path / CONFIG_FILE}: {exc}') from None
    return model.to(device).eval(), info


def link_checkpoint(target: Path, link: Path) -> None:
    """Point ``link`` (e.g. ``checkpoints/last``) at ``target`` atomically (relative symlink)."""
    tmp = link.parent / f'.{link.name}.tmp'
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
