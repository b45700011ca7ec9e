"""
``TransformerJointGripperNoDQ``: K frames of RGB-D + joint positions -> T future joint targets.

Layout (docs/model.md; names kept from the original design notes)::

    obs_rgb [B,K,3,H,W] -> ConvEncoder(3->img)  -> feat_rgb   [B,K,img]
    obs_depth [B,K,1,H,W] -> ConvEncoder(1->img) -> feat_depth [B,K,img]
    obs_q [B,K,7]         -> LowDimEncoder(7->q) -> feat_q     [B,K,q]
    concat -> fuse MLP -> tokens [B,K,D] (+ positional encoding) -> TransformerEncoder -> memory
    learned queries [T_max,D][:T] (+ positional encoding) -> TransformerDecoder(tgt, memory)
    -> head MLP -> tanh -> pred_joint [B,T,7] in [-1, 1]

With ``action_space: task`` the head predicts, per step, an end-effector displacement [6] and a
null-space motion [7]; :class:`TaskSpaceJoints` turns them into joint targets through the damped
Jacobian of the newest joints (the output is the same ``pred_joint``).

The per-frame encoders see one frame at a time, so :meth:`encode_frames` turns frames into
tokens independently and :meth:`decode_tokens` runs the transformer on a window of tokens: an
online controller encodes only the newest frame per step and keeps the older tokens.
"""

from collections.abc import Sequence
import math

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.config import ModelConfig
import numpy as np
import numpy.typing as npt
import torch
from torch import nn
import torch.nn.functional as F


class SpatialSoftmax(nn.Module):
    """
    Expected image coordinates of each feature map (keypoints), as in robomimic.

    The softmax has a learned inverse temperature, initially ``beta``: a sharp start lets a
    small object (a few pixels) dominate its feature map early in training.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        logits = x.flatten(2) * self.log_beta.exp()  # [N,C,H*W]
        attn = F.softmax(logits, dim=-1).view(n, c, h, w)  # [N,C,H*W] -> [N,C,H,W]
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        ey = (attn.sum(dim=3) * ys).sum(dim=2)  # [N,C]
        ex = (attn.sum(dim=2) * xs).sum(dim=2)  # [N,C]
        return torch.cat([ex, ey], dim=1)  # [N,2C]


class ConvEncoder(nn.Module):
    """Strided conv stack + pooling + linear: one image [N,C,H,W] -> feature [N,out_dim]."""

    def __init__(
        self,
        in_ch: int,
        out_dim: int,
        channels: tuple[int, ...],
        pool: str = 'avg',
        norm: str = 'none',
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_ch
        for i, co in enumerate(channels):
            ks = 5 if i == 0 else 3
            layers.append(nn.Conv2d(c, co, ks, stride=2, padding=ks // 2))
            if norm == 'group':
                layers.append(nn.GroupNorm(math.gcd(8, co), co))
            layers.append(nn.ReLU())
            c = co
        self.convs = nn.Sequential(*layers)
        self.pool: nn.Module = (
            SpatialSoftmax(beta) if pool == 'spatial_softmax' else nn.AdaptiveAvgPool2d(1)
        )
        pooled = 2 * c if pool == 'spatial_softmax' else c
        self.proj = nn.Linear(pooled, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)  # [N,C',H',W']
        h = self.pool(h).flatten(1)  # [N,C'] (avg) or [N,2C'] (keypoints)
        out: torch.Tensor = self.proj(h)  # [N,out_dim]
        return out


class LowDimEncoder(nn.Module):
    """Joint vector [N,in_dim] -> feature [N,out_dim] (Linear -> ReLU -> Linear)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal position encoding added to a [B,L,D] sequence."""

    pe: torch.Tensor

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # [L,1]
        div = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model)
        )
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, :d_model // 2]
        self.register_buffer('pe', pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:x.shape[1]][None]  # [B,L,D] + [1,L,D]


def gen3_jacobian(
    q: torch.Tensor, origins: torch.Tensor, ee_origin: torch.Tensor
) -> torch.Tensor:
    """
    Geometric Jacobian of the tool frame [B,6,7] at joint positions ``q`` [B,7] (rad).

    The same chain and convention as ``kinematics.jacobian`` (rows 0-2 linear, 3-5 angular
    velocity, in ``base_link``), batched in torch; ``origins`` [7,4,4] and ``ee_origin`` [4,4]
    are ``kinematics.ORIGIN_MATRICES`` and ``kinematics.EE_ORIGIN_MATRIX``.
    """
    b = q.shape[0]
    c, s = torch.cos(q), torch.sin(q)  # [B,7]
    o, z = torch.ones_like(c), torch.zeros_like(c)
    rz = torch.stack(
        [c, -s, z, z, s, c, z, z, z, z, o, z, z, z, z, o], dim=-1
    ).view(b, 7, 4, 4)  # [B,7,16] -> [B,7,4,4]
    t = torch.eye(4, dtype=q.dtype, device=q.device).expand(b, 4, 4)
    axes, points = [], []
    for i in range(7):
        t = t @ origins[i]
        axes.append(t[:, :3, 2])
        points.append(t[:, :3, 3])
        t = t @ rz[:, i]
    p_ee = (t @ ee_origin)[:, :3, 3]  # [B,3]
    axis = torch.stack(axes, dim=1)  # [B,7,3]
    lever = p_ee[:, None] - torch.stack(points, dim=1)  # [B,1,3] - [B,7,3]
    linear = torch.linalg.cross(axis, lever, dim=-1)  # [B,7,3]
    return torch.cat([linear, axis], dim=-1).transpose(1, 2)  # [B,7,6] -> [B,6,7]


class TaskSpaceJoints(nn.Module):
    """
    Turn per-step end-effector displacements into normalized joint targets (``task`` actions).

    For each of the T steps the head gives ``x`` [6] (displacement of the tool point,
    ``tcp_offset`` m along ``end_effector_link``'s z, from the newest pose: metres × ``POS_UNIT``
    and rad × ``ROT_UNIT``, base frame) and ``n`` [7]
    (joint motion × ``NULL_UNIT`` rad, projected on the Jacobian's null space); the target is
    ``q + J⁺ x + (I - J⁺J) n`` with the damped pseudo-inverse ``J⁺ = Jᵀ(JJᵀ + λ²I)⁻¹`` at the
    newest joints ``q``. Reaching a place in the image is then a displacement, as the goal head
    learns it, instead of an inverse kinematics the network has to learn. The joint
    normalization (the checkpoint's stats) is needed to go between normalized joints and
    radians: :meth:`set_joint_normalization`; a model without it raises.
    """

    POS_UNIT = 0.1
    ROT_UNIT = 0.5
    NULL_UNIT = 0.2
    DAMPING = 0.05

    origins: torch.Tensor
    ee_origin: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor
    unit: torch.Tensor

    def __init__(self, tcp_offset: float = 0.0) -> None:
        super().__init__()
        self.register_buffer(
            'origins', torch.tensor(kin.ORIGIN_MATRICES, dtype=torch.float32), persistent=False
        )
        # the moved point: tcp_offset m along end_effector_link's z (model.tcp_offset)
        ee_origin = torch.tensor(kin.tool_matrix(tcp_offset), dtype=torch.float32)
        self.register_buffer('ee_origin', ee_origin, persistent=False)
        # Not part of the weights: set from the checkpoint's stats (NaN = not set).
        self.register_buffer('center', torch.full((7,), math.nan), persistent=False)
        self.register_buffer('scale', torch.full((7,), math.nan), persistent=False)
        unit = [self.POS_UNIT] * 3 + [self.ROT_UNIT] * 3 + [self.NULL_UNIT] * 7
        self.register_buffer('unit', torch.tensor(unit), persistent=False)

    def set_joint_normalization(
        self,
        center: npt.ArrayLike,
        scale: npt.ArrayLike,
        joint_names: Sequence[str] = kin.JOINT_NAMES,
    ) -> None:
        """Set ``normalized = (rad - center) * scale`` of the 7 Gen3 joints (JointNormalizer)."""
        if tuple(joint_names) != kin.JOINT_NAMES:
            raise ValueError(
                f'model.action_space=task needs the Gen3 joints {list(kin.JOINT_NAMES)} in this '
                f'order, got joint_names {list(joint_names)}'
            )
        c = np.asarray(center, dtype=np.float64)
        k = np.asarray(scale, dtype=np.float64)
        if c.shape != (7,) or k.shape != (7,) or not (np.isfinite(c).all() and (k > 0).all()):
            raise ValueError(
                f'joint normalization: center {c.tolist()} and scale {k.tolist()} must be 7 '
                'finite values, scale > 0'
            )
        self.center.copy_(torch.from_numpy(c))
        self.scale.copy_(torch.from_numpy(k))

    def forward(self, out: torch.Tensor, q_last: torch.Tensor) -> torch.Tensor:
        """Map head output [B,T,13] and newest normalized joints [B,7] to targets [B,T,7]."""
        if not bool(torch.isfinite(self.scale).all()):
            raise ValueError(
                'model.action_space=task: the joint normalization (stats q_min/q_max) was not '
                'set on the model (set_joint_normalization)'
            )
        q = q_last.float() / self.scale + self.center  # [B,7] rad
        jac = gen3_jacobian(q, self.origins, self.ee_origin)  # [B,6,7]
        damped = jac @ jac.transpose(1, 2) + self.DAMPING**2 * torch.eye(
            6, dtype=jac.dtype, device=jac.device
        )  # [B,6,6]
        pinv = torch.linalg.solve(damped, jac).transpose(1, 2)  # [B,7,6] = Jᵀ(JJᵀ+λ²I)⁻¹
        null = torch.eye(7, dtype=jac.dtype, device=jac.device) - pinv @ jac  # [B,7,7]
        step = out.float() * self.unit  # [B,T,13]
        d_rad = step[..., :6] @ pinv.transpose(1, 2) + step[..., 6:] @ null.transpose(1, 2)
        target: torch.Tensor = (q_last[:, None] + d_rad * self.scale).clamp(-1.0, 1.0)
        return target  # [B,T,7]


class TransformerJointGripperNoDQ(nn.Module):
    """Transformer encoder-decoder from observation tokens to future normalized joint targets."""

    def __init__(self, cfg: ModelConfig, obs_horizon: int = 8) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        conv = (cfg.conv_channels, cfg.image_pool, cfg.conv_norm, cfg.keypoint_beta)
        self.rgb_enc = ConvEncoder(3, cfg.img_feat_dim, *conv)
        self.depth_enc = ConvEncoder(1, cfg.img_feat_dim, *conv)
        self.q_enc = LowDimEncoder(cfg.num_joints, cfg.q_feat_dim)
        self.fuse = nn.Sequential(
            nn.Linear(2 * cfg.img_feat_dim + cfg.q_feat_dim, d), nn.ReLU(), nn.Linear(d, d)
        )
        self.pos_enc = PositionalEncoding(d, max(obs_horizon + 1, cfg.max_pred_horizon, 64))
        enc_layer = nn.TransformerEncoderLayer(
            d, cfg.nhead, cfg.dim_feedforward, cfg.dropout, batch_first=True,
            norm_first=cfg.norm_first,
        )
        self.encoder = nn.TransformerEncoder(
            enc_layer, cfg.num_encoder_layers, enable_nested_tensor=False
        )
        self.queries = nn.Parameter(torch.randn(cfg.max_pred_horizon, d) * 0.02)
        dec_layer = nn.TransformerDecoderLayer(
            d, cfg.nhead, cfg.dim_feedforward, cfg.dropout, batch_first=True,
            norm_first=cfg.norm_first,
        )
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.num_decoder_layers)
        task = cfg.action_space == 'task'
        head_out = 6 + cfg.num_joints if task else cfg.num_joints
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, head_out))
        self.task_space: TaskSpaceJoints | None = (
            TaskSpaceJoints(cfg.tcp_offset) if task else None
        )
        # Optional training aid: predicts where the end effector ends the episode, from the
        # newest token of the encoder memory (not used to control the robot).
        self.goal_head: nn.Module | None = (
            nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 3)) if cfg.goal_head else None
        )

    def set_joint_normalization(
        self,
        center: npt.ArrayLike,
        scale: npt.ArrayLike,
        joint_names: Sequence[str] = kin.JOINT_NAMES,
    ) -> None:
        """Give a task-space model the joint normalization of its checkpoint (no-op otherwise)."""
        if self.task_space is not None:
            self.task_space.set_joint_normalization(center, scale, joint_names)

    def encode_frames(
        self, rgb: torch.Tensor, depth: torch.Tensor, q: torch.Tensor
    ) -> torch.Tensor:
        """
        Encode frames independently into tokens (cacheable: no frame sees another).

        :param rgb: float32 [N,3,H,W] in [0, 1].
        :param depth: float32 [N,1,H,W] normalized depth.
        :param q: float32 [N,7] normalized joint positions.
        :return: tokens [N,D] (before positional encoding).
        """
        return self.fuse_tokens(self.encode_images(rgb, depth), q)

    def encode_images(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Image features of frames: [N,3,H,W] + [N,1,H,W] -> [N,2*img] (the costly part)."""
        return torch.cat([self.rgb_enc(rgb), self.depth_enc(depth)], dim=-1)

    def fuse_tokens(self, image_feat: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Join image features [...,2*img] and normalized joints [...,7] into tokens [...,D]."""
        feat = torch.cat([image_feat, self.q_enc(q)], dim=-1)  # [...,2*img+q]
        tokens: torch.Tensor = self.fuse(feat)  # [...,D]
        return tokens

    def decode_tokens(
        self, tokens: torch.Tensor, pred_horizon: int, q_last: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict ``[B,T,7]`` from tokens ``[B,K,D]`` (see :meth:`decode_with_goal`)."""
        return self._decode(tokens, pred_horizon, q_last)[0]

    def decode_with_goal(
        self, tokens: torch.Tensor, pred_horizon: int, q_last: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Run the transformer on a window of frame tokens.

        :param tokens: [B,K,D], oldest frame first.
        :param pred_horizon: T <= cfg.max_pred_horizon.
        :param q_last: [B,7] normalized joints of the newest frame; required when
            ``cfg.residual`` (the head then predicts the change from it, in tanh pre-activation
            space, so the output stays in (-1, 1) and a zero head output means "stay").
        :return: pred_joint [B,T,7] in [-1, 1], and the goal prediction [B,3] (None without
            ``cfg.goal_head``).
        """
        pred, memory = self._decode(tokens, pred_horizon, q_last)
        goal = self.goal_head(memory[:, -1]) if self.goal_head is not None else None  # [B,3]
        return pred, goal

    def _decode(
        self, tokens: torch.Tensor, pred_horizon: int, q_last: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return pred_joint [B,T,7] and the encoder memory [B,K,D] (the goal head's input)."""
        if not 1 <= pred_horizon <= self.cfg.max_pred_horizon:
            raise ValueError(f'pred_horizon {pred_horizon} outside 1..{self.cfg.max_pred_horizon}')
        b = tokens.shape[0]
        memory = self.encoder(self.pos_enc(tokens))  # [B,K,D]
        tgt = self.queries[:pred_horizon][None].expand(b, -1, -1)  # [T,D] -> [B,T,D]
        h = self.decoder(self.pos_enc(tgt), memory)  # [B,T,D]
        out = self.head(h)  # [B,T,7], or [B,T,13] in task space
        if self.task_space is not None:
            if q_last is None:
                raise ValueError('a task-space model needs q_last, the newest joint positions')
            return self.task_space(out, q_last), memory  # [B,T,7], [B,K,D]
        if self.cfg.residual:
            if q_last is None:
                raise ValueError('a residual model needs q_last, the newest joint positions')
            out = out + torch.atanh(q_last.clamp(-0.999, 0.999))[:, None]  # + [B,1,7]
        return torch.tanh(out), memory  # [B,T,7], [B,K,D]

    def forward(
        self,
        obs_rgb: torch.Tensor,
        obs_depth: torch.Tensor,
        obs_q: torch.Tensor,
        pred_horizon: int = 12,
        window_index: torch.Tensor | None = None,
        return_goal: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """
        Predict normalized joint targets from a batch of observation windows.

        Batch keys and shapes (all float32, normalized as in the dataset):

        - ``obs_rgb``: [B,K,3,H,W] in [0, 1]
        - ``obs_depth``: [B,K,1,H,W] in [0, 1] (``normalize_depth01``)
        - ``obs_q``: [B,K,7] in [-1, 1]

        K is ``data.obs_horizon`` frames, oldest first, or 1 + ``data.obs_horizon`` with
        ``data.anchor_frame`` (then the first is the episode's first frame).

        Segment batches (training speed-up, see ``KinovaJointDataset.segment``): with
        ``window_index`` [S,K] the images are G segments of L frames, ``obs_rgb`` [G,L,3,H,W],
        ``obs_depth`` [G,L,1,H,W], each frame encoded once and shared by the S windows that
        contain it, and ``obs_q`` is [G*S,K,7]; then B = G*S.

        :return: ``pred_joint`` [B,T,7] in [-1, 1], T = ``pred_horizon``; with
            ``return_goal`` also the goal prediction [B,3] (training aid, ``cfg.goal_head``).
        """
        if window_index is not None:
            g, n_frames = obs_rgb.shape[:2]
            feat = self.encode_images(
                obs_rgb.flatten(0, 1),  # [G,L,3,H,W] -> [G*L,3,H,W]
                obs_depth.flatten(0, 1),  # [G,L,1,H,W] -> [G*L,1,H,W]
            ).view(g, n_frames, -1)  # [G*L,F] -> [G,L,F]
            windows = feat[:, window_index].flatten(0, 1)  # [G,S,K,F] -> [G*S,K,F]
            tokens = self.fuse_tokens(windows, obs_q)  # [G*S,K,D]
        else:
            b, k = obs_rgb.shape[:2]
            tokens = self.encode_frames(
                obs_rgb.flatten(0, 1),  # [B,K,3,H,W] -> [B*K,3,H,W]
                obs_depth.flatten(0, 1),  # [B,K,1,H,W] -> [B*K,1,H,W]
                obs_q.flatten(0, 1),  # [B,K,7] -> [B*K,7]
            ).view(b, k, -1)  # [B*K,D] -> [B,K,D]
        pred, goal = self.decode_with_goal(tokens, pred_horizon, obs_q[:, -1])
        return (pred, goal) if return_goal else pred


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
