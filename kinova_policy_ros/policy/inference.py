"""
``PolicyRunner``: the online side of the policy, pure torch/numpy (no ROS).

It keeps the tokens of the last K observations (the frame cache), so a control step encodes one
new frame and runs the transformer on the window. Before K observations exist the window is
edge-padded with the first one, exactly like the dataset, so ``predict()`` after pushing frames
``0..t`` of an episode equals the model on dataset item ``t``.
"""

from collections import deque
from collections.abc import Callable, Mapping
import os
import warnings

from kinova_policy_ros.core.errors import CheckpointError
from kinova_policy_ros.data.preprocess import describe_fit, preprocess_frames, StreamGeometry
from kinova_policy_ros.policy.checkpoint import CheckpointInfo, load_checkpoint
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
import numpy as np
import torch

#: One preprocessed observation: rgb [1,3,h,w], depth [1,1,h,w], normalized joints [1,7].
Frame = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as given."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise CheckpointError(f'device {device!r} requested but CUDA is not available')
    return torch.device(device)


class _EncodeFrames(torch.nn.Module):
    """``model.encode_frames`` as a module (what TorchScript traces)."""

    def __init__(self, model: TransformerJointGripperNoDQ) -> None:
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.model.encode_frames(rgb, depth, q)  # [N,D]


class _DecodeTokens(torch.nn.Module):
    """``model.decode_tokens`` at a fixed horizon as a module (what TorchScript traces)."""

    def __init__(self, model: TransformerJointGripperNoDQ, pred_horizon: int) -> None:
        super().__init__()
        self.model = model
        self.pred_horizon = pred_horizon

    def forward(self, tokens: torch.Tensor, q_last: torch.Tensor) -> torch.Tensor:
        return self.model.decode_tokens(tokens, self.pred_horizon, q_last)  # [B,T,7]


#: Largest difference allowed between the traced and the eager model on the check input.
JIT_TOLERANCE = 1e-4


class PolicyRunner:
    """
    Feed observations one at a time, get denormalized joint targets in radians.

    ``jit=True`` (cache mode) runs the frame encoder and the transformer as TorchScript traces,
    frozen (and, on a CPU, optimized for inference): the same operations without the Python of
    ``nn.Module`` calls and attention's argument checks, ~1.9x faster for the transformer at
    the demo's size on a CPU. Each trace is checked against the eager model at startup (within
    ``JIT_TOLERANCE``); if tracing fails or disagrees, the runner stays eager and says why in
    ``jit_note``.
    """

    def __init__(
        self,
        model: TransformerJointGripperNoDQ,
        info: CheckpointInfo,
        device: torch.device,
        use_cache: bool = True,
        jit: bool = False,
    ) -> None:
        if device.type == 'cpu':
            # NHWC (channels_last) conv weights: oneDNN then runs the frame encoders ~15 %
            # faster on CPU (docs/latency.md); the targets move by ~1e-7 rad (test/policy).
            for param in (*model.rgb_enc.parameters(), *model.depth_enc.parameters()):
                if param.dim() == 4:  # conv kernels [out,in,kh,kw]
                    param.data = param.data.contiguous(memory_format=torch.channels_last)
        self.model = model
        self.info = info
        self.device = device
        self.use_cache = use_cache
        data = info.data
        self.joint_names: tuple[str, ...] = info.joint_names
        self.dt: float = info.dt
        self.obs_horizon: int = data.obs_horizon
        self.anchor_frame: bool = data.anchor_frame
        self.pred_horizon: int = data.pred_horizon
        self.action_horizon: int = data.action_horizon
        self.image_hw: tuple[int, int] = data.resize_hw
        #: the camera streams of the training data (None: an older checkpoint, unknown)
        self.geometry: StreamGeometry | None = info.geometry
        self.q_min: np.ndarray = info.stats.q_min.copy()
        self.q_max: np.ndarray = info.stats.q_max.copy()
        self._q_norm = info.stats.q
        self._tokens: deque[torch.Tensor] = deque(maxlen=self.obs_horizon)
        self._frames: deque[Frame] = deque(maxlen=self.obs_horizon)
        # token (or frame) of the first observation since the reset: left padding, and the
        # anchor heading every window with data.anchor_frame
        self._first_token: torch.Tensor | None = None
        self._first_frame: Frame | None = None
        self._q_last = torch.zeros(len(self.joint_names), device=device)
        self._encode: Callable[..., torch.Tensor] = model.encode_frames
        self._decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _DecodeTokens(
            model, self.pred_horizon
        )
        #: whether the TorchScript traces run, and why not when they were asked for and do not
        self.jit = False
        self.jit_note = ''
        if jit and use_cache:
            self._trace()

    def _example(self) -> tuple[Frame, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        h, w = self.image_hw
        frame = (
            torch.rand(1, 3, h, w, generator=g).to(self.device),
            torch.rand(1, 1, h, w, generator=g).to(self.device),
            (torch.rand(1, len(self.joint_names), generator=g) * 1.6 - 0.8).to(self.device),
        )
        k = self.obs_horizon + self.anchor_frame
        tokens = self.model.encode_frames(*frame).expand(k, -1)[None]  # [1,D] -> [1,K,D]
        return frame, tokens + 0.01 * torch.arange(k, device=self.device)[None, :, None]

    def _trace(self) -> None:
        """Swap in frozen TorchScript traces of the encoder and the transformer (checked)."""
        model = self.model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                frame, tokens = self._example()
                q_last = frame[2]
                # The model's input checks (shapes, set stats) hold for every window of this
                # runner: the trace keeps their outcome, which TracerWarning reports. torch 2.13
                # deprecates TorchScript; where it is gone, the except below keeps the runner
                # eager.
                warnings.simplefilter('ignore', torch.jit.TracerWarning)
                warnings.simplefilter('ignore', DeprecationWarning)
                enc = torch.jit.freeze(
                    torch.jit.trace(  # type: ignore[no-untyped-call]
                        _EncodeFrames(model).eval(), frame
                    )
                )
                dec = torch.jit.freeze(
                    torch.jit.trace(  # type: ignore[no-untyped-call]
                        _DecodeTokens(model, self.pred_horizon).eval(), (tokens, q_last)
                    )
                )
                if self.device.type == 'cpu':
                    enc = torch.jit.optimize_for_inference(enc)
                    dec = torch.jit.optimize_for_inference(dec)
                diff = max(
                    float((enc(*frame) - model.encode_frames(*frame)).abs().max()),
                    float((dec(tokens, q_last) - self._decode(tokens, q_last)).abs().max()),
                )
        except Exception as err:  # any failure to trace means: run eager
            self.jit_note = f'TorchScript trace failed, running eager: {err}'
            return
        if not diff <= JIT_TOLERANCE:
            self.jit_note = (
                f'TorchScript trace differs from the model by {diff:.2e} (> {JIT_TOLERANCE}), '
                'running eager'
            )
            return
        self._encode, self._decode, self.jit = enc, dec, True

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str = 'cpu',
        use_cache: bool = True,
        expected: Mapping[str, object] | None = None,
        jit: bool = False,
    ) -> 'PolicyRunner':
        """
        Load a checkpoint directory (``jit``: see the class).

        :param expected: optional ``{field: value}`` the checkpoint must match, with fields like
            ``'joint_names'``, ``'dt'`` or ``'data.obs_horizon'``; a mismatch raises
            :class:`CheckpointError` naming the field.
        """
        dev = resolve_device(device)
        model, info = load_checkpoint(path, dev)
        if expected:
            cfg = info.to_json()
            for dotted, want in expected.items():
                node: object = cfg
                for part in dotted.split('.'):
                    if not isinstance(node, dict) or part not in node:
                        raise CheckpointError(f'{path}: checkpoint has no field {dotted!r}')
                    node = node[part]
                have = list(node) if isinstance(node, tuple | list) else node
                want_v = list(want) if isinstance(want, tuple | list) else want
                if have != want_v:
                    raise CheckpointError(
                        f'{path}: field {dotted!r} is {have!r}, expected {want_v!r}'
                    )
        return cls(model, info, dev, use_cache, jit)

    def stream_report(self, rgb_hw: tuple[int, int], depth_hw: tuple[int, int]) -> tuple[str, str]:
        """
        Describe live stream sizes against the training data: ``(info, warning)``.

        ``info`` says how each stream becomes the model input (:func:`describe_fit`); ``warning``
        is empty unless a size or aspect ratio differs from the checkpoint's
        :class:`StreamGeometry` (the model still runs). With an older checkpoint (no geometry)
        ``info`` says that the sizes cannot be checked.
        """
        data = self.info.data
        fits = (
            f'rgb {describe_fit(rgb_hw, data.resize_hw, data.crop, data.fit)}, '
            f'depth {describe_fit(depth_hw, data.resize_hw, data.crop, data.fit)} '
            f'(data.fit {data.fit})'
        )
        if self.geometry is None:
            return (
                f'{fits}; the checkpoint does not record the camera stream sizes it was trained '
                'on (written before they were recorded): live sizes are not checked',
                '',
            )
        return fits, self.geometry.mismatch(rgb_hw, depth_hw)

    @property
    def num_observations(self) -> int:
        """Observations in the window (at most ``obs_horizon``)."""
        return len(self._tokens) if self.use_cache else len(self._frames)

    def reset(self) -> None:
        """Forget all observations (e.g. after stale input or a new episode)."""
        self._tokens.clear()
        self._frames.clear()
        self._first_token = None
        self._first_frame = None

    def _prepare(
        self, rgb: np.ndarray, depth_m: np.ndarray, q: np.ndarray
    ) -> Frame:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f'q: expected {len(self.joint_names)} joint positions, got {q.shape}')
        if not np.all(np.isfinite(q)):
            raise ValueError(f'q: non-finite joint positions {q}')
        data = self.info.data
        rgb_t, depth_t = preprocess_frames(
            np.asarray(rgb)[None],
            np.asarray(depth_m, dtype=np.float32)[None],
            data.resize_hw,
            data.max_depth_m,
            data.normalize_depth01,
            data.crop,
            data.fit,
        )  # [1,3,h,w], [1,1,h,w]
        q_t = torch.from_numpy(self._q_norm.normalize(q))[None]  # [1,7]
        return rgb_t.to(self.device), depth_t.to(self.device), q_t.to(self.device)

    @torch.inference_mode()
    def push_observation(self, rgb: np.ndarray, depth_m: np.ndarray, q: np.ndarray) -> None:
        """
        Add the newest observation.

        :param rgb: uint8 [H, W, 3] RGB at any size (fitted to the model's: ``data.fit``).
        :param depth_m: float32 [H', W'] metres, 0 = invalid, at any size (fitted on its own).
        :param q: [7] joint positions in rad, in ``joint_names`` order, in the range the model
            was trained on (unwrapped like the training data).
        """
        frame = self._prepare(rgb, depth_m, q)
        self._q_last = frame[2][0]  # [7]
        if self.use_cache:
            token = self._encode(*frame)[0]  # [1,D] -> [D]
            if self._first_token is None:
                self._first_token = token
            self._tokens.append(token)
        else:
            if self._first_frame is None:
                self._first_frame = frame
            self._frames.append(frame)

    @torch.inference_mode()
    def predict_normalized(self) -> torch.Tensor:
        """Predict ``[T, 7]`` normalized targets for the current window."""
        n = self.num_observations
        if n == 0:
            raise RuntimeError('predict() before any push_observation()')
        pad = self.obs_horizon - n + self.anchor_frame  # the anchor is one more first frame
        if self.use_cache:
            assert self._first_token is not None  # set by the first push_observation
            window = [self._first_token] * pad + list(self._tokens)
            tokens = torch.stack(window)[None]  # K x [D] -> [1,K,D]
        else:
            assert self._first_frame is not None
            frames = [self._first_frame] * pad + list(self._frames)
            rgb = torch.cat([f[0] for f in frames])  # [K,3,h,w]
            depth = torch.cat([f[1] for f in frames])  # [K,1,h,w]
            q = torch.cat([f[2] for f in frames])  # [K,7]
            tokens = self.model.encode_frames(rgb, depth, q)[None]  # [K,D] -> [1,K,D]
        q_last = self._q_last[None]  # [1,7] normalized joints of the newest observation
        return self._decode(tokens, q_last)[0]  # [1,T,7] -> [T,7]

    def predict(self) -> np.ndarray:
        """Predict ``[pred_horizon, 7]`` joint targets in radians (``joint_names`` order)."""
        pred = self.predict_normalized().float().cpu().numpy()
        return self._q_norm.denormalize(pred)
