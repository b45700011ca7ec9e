"""TransformerJointGripperNoDQ: shapes, the cached split, and one golden output."""

import json
from pathlib import Path

from kinova_policy_ros.core.config import ModelConfig
from kinova_policy_ros.policy.model import count_parameters, TransformerJointGripperNoDQ
import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / 'fixtures' / 'model_golden.json'
SMALL = ModelConfig(
    d_model=32, nhead=4, dim_feedforward=64, img_feat_dim=16, q_feat_dim=8, conv_channels=(8, 16)
)


def golden_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    rgb = torch.rand(2, 8, 3, 24, 32, generator=g)
    depth = torch.rand(2, 8, 1, 24, 32, generator=g)
    q = torch.rand(2, 8, 7, generator=g) * 2 - 1
    return rgb, depth, q


def golden_model() -> TransformerJointGripperNoDQ:
    torch.manual_seed(0)
    return TransformerJointGripperNoDQ(SMALL).eval()


@pytest.mark.parametrize('pool', ['avg', 'spatial_softmax'])
def test_shapes_and_range(pool: str):
    cfg = ModelConfig(**{**SMALL.__dict__, 'image_pool': pool})
    model = TransformerJointGripperNoDQ(cfg).eval()
    rgb, depth, q = golden_inputs()
    with torch.no_grad():
        out = model(rgb, depth, q, pred_horizon=12)
    assert out.shape == (2, 12, 7)
    assert float(out.abs().max()) <= 1.0
    assert model(rgb, depth, q, pred_horizon=3).shape == (2, 3, 7)
    with pytest.raises(ValueError, match=r'pred_horizon 33 outside 1\.\.32'):
        model(rgb, depth, q, pred_horizon=33)


def test_cached_tokens_equal_full_forward():
    model = golden_model()
    rgb, depth, q = golden_inputs()
    with torch.no_grad():
        full = model(rgb, depth, q, 12)
        # Online: each frame encoded on its own (as it arrives), then the window decoded.
        tokens = torch.stack(
            [
                torch.stack(
                    [
                        model.encode_frames(rgb[b, k:k + 1], depth[b, k:k + 1], q[b, k:k + 1])[0]
                        for k in range(8)
                    ]
                )
                for b in range(2)
            ]
        )  # [B,K,D]
        cached = model.decode_tokens(tokens, 12)
    assert torch.allclose(full, cached, atol=1e-5, rtol=0)


def test_window_order_matters():
    model = golden_model()
    rgb, depth, q = golden_inputs()
    with torch.no_grad():
        a = model(rgb, depth, q, 12)
        b = model(rgb.flip(1), depth.flip(1), q.flip(1), 12)
    assert not torch.allclose(a, b, atol=1e-4)  # positional encoding is in effect


def test_golden_output():
    """Same seed, same input -> the recorded output (guards silent architecture changes)."""
    model = golden_model()
    rgb, depth, q = golden_inputs()
    with torch.no_grad():
        out = model(rgb, depth, q, 12)
    golden = json.loads(GOLDEN.read_text())
    assert count_parameters(model) == golden['num_parameters']
    expected = torch.tensor(golden['output_first_row'])
    assert torch.allclose(out[0, 0], expected, atol=1e-5), out[0, 0].tolist()
    assert float(out.sum()) == pytest.approx(golden['output_sum'], abs=1e-4)


def test_segment_batch_equals_independent_windows():
    """Shared frame encodings (training speed-up) give exactly the per-window result."""
    model = golden_model()
    g = torch.Generator().manual_seed(5)
    frames_rgb = torch.rand(2, 10, 3, 24, 32, generator=g)  # G=2 segments of L=10 frames
    frames_depth = torch.rand(2, 10, 1, 24, 32, generator=g)
    window_index = torch.arange(3)[:, None] + torch.arange(8)[None, :]  # S=3 windows of K=8
    q = torch.rand(6, 8, 7, generator=g)  # [G*S,K,7]
    with torch.no_grad():
        seg = model(frames_rgb, frames_depth, q, 12, window_index)
        rgb = frames_rgb[:, window_index].flatten(0, 1)  # [G,S,K,...] -> [G*S,K,...]
        depth = frames_depth[:, window_index].flatten(0, 1)
        ref = model(rgb, depth, q, 12)
    assert seg.shape == (6, 12, 7)
    assert torch.allclose(seg, ref, atol=1e-5, rtol=0)


def test_residual_head_predicts_change_from_newest_joints():
    cfg = ModelConfig(**{**SMALL.__dict__, 'residual': True})
    model = TransformerJointGripperNoDQ(cfg).eval()
    rgb, depth, q = golden_inputs()
    q = q * 0.9  # inside (-1, 1)
    with torch.no_grad():
        model.head[2].weight.zero_()
        model.head[2].bias.zero_()
        out = model(rgb, depth, q, 12)
        assert torch.allclose(out, q[:, -1:].expand(-1, 12, -1), atol=1e-5)  # zero change
        tokens = model.encode_frames(rgb[0], depth[0], q[0])[None]
        with pytest.raises(ValueError, match='needs q_last'):
            model.decode_tokens(tokens, 12)


def test_goal_head_is_optional():
    rgb, depth, q = golden_inputs()
    with torch.no_grad():
        pred, goal = golden_model()(rgb, depth, q, 12, return_goal=True)
        assert goal is None and pred.shape == (2, 12, 7)
        model = TransformerJointGripperNoDQ(ModelConfig(**{**SMALL.__dict__, 'goal_head': True}))
        pred, goal = model.eval()(rgb, depth, q, 12, return_goal=True)
    assert goal is not None and goal.shape == (2, 3)


def test_keypoint_temperature_and_pre_norm_options():
    from kinova_policy_ros.policy.model import SpatialSoftmax

    x = torch.zeros(1, 1, 5, 7)
    x[0, 0, 4, 6] = 1.0  # bottom-right cell stands out a little
    soft, sharp = SpatialSoftmax(1.0), SpatialSoftmax(20.0)
    with torch.no_grad():
        assert float(sharp(x)[0, 0]) > float(soft(x)[0, 0]) > 0  # x keypoint pulled right
        assert float(sharp(x)[0, 0]) == pytest.approx(1.0, abs=1e-3)
    cfg = ModelConfig(**{**SMALL.__dict__, 'image_pool': 'spatial_softmax', 'norm_first': True})
    model = TransformerJointGripperNoDQ(cfg).eval()
    assert model.encoder.layers[0].norm_first
    rgb, depth, q = golden_inputs()
    with torch.no_grad():
        assert model(rgb, depth, q, 12).shape == (2, 12, 7)


TASK = ModelConfig(**{**SMALL.__dict__, 'action_space': 'task'})


def test_gen3_jacobian_equals_the_kinematics_module():
    from kinova_policy_ros.core import kinematics as kin
    from kinova_policy_ros.policy.model import gen3_jacobian
    import numpy as np

    q = np.random.default_rng(3).uniform(-3.0, 3.0, (6, 7))
    jac = gen3_jacobian(
        torch.tensor(q),
        torch.tensor(kin.ORIGIN_MATRICES),
        torch.tensor(kin.EE_ORIGIN_MATRIX),
    ).numpy()  # [6,6,7]
    for i in range(len(q)):
        assert np.allclose(jac[i], kin.jacobian(q[i]), atol=1e-12)


def test_task_space_head_moves_the_end_effector_by_the_displacement():
    from kinova_policy_ros.core import kinematics as kin
    from kinova_policy_ros.policy.model import TaskSpaceJoints
    import numpy as np

    layer = TaskSpaceJoints()
    scale = np.full(7, 0.5)
    layer.set_joint_normalization(kin.HOME, scale)  # HOME <-> normalized 0
    out = torch.zeros(1, 4, 13)
    out[0, 0, 0] = 0.1  # +1 cm in x (POS_UNIT 0.1 m)
    out[0, 1, 1] = -0.2  # -2 cm in y
    out[0, 2, 2] = 0.1  # +1 cm in z
    out[0, 3, 6:] = 0.25  # null-space motion only (0.05 rad a joint)
    with torch.no_grad():
        target = layer(out, torch.zeros(1, 7))[0].double().numpy() / scale + kin.HOME  # [4,7]
    moved = kin.fk(target)[0] - kin.fk(kin.HOME)[0]  # [4,3] m
    expected = np.array([[0.01, 0, 0], [0, -0.02, 0], [0, 0, 0.01], [0, 0, 0]])
    # The damping (λ = 0.05) shortens a step by a few per cent; a wrong axis or sign is cm off.
    assert np.allclose(moved, expected, atol=0.002), moved
    assert not np.allclose(target[3], kin.HOME, atol=1e-3)  # the joints did move


def test_task_space_head_with_a_tcp_offset_moves_the_tool_point():
    from kinova_policy_ros.core import kinematics as kin
    from kinova_policy_ros.policy.model import TaskSpaceJoints
    import numpy as np

    offset = 0.1086  # the Robotiq 2F-85's point between the fingertips
    layer = TaskSpaceJoints(offset)
    scale = np.full(7, 0.5)
    layer.set_joint_normalization(kin.HOME, scale)
    out = torch.zeros(2, 1, 13)
    out[0, 0, 1] = 0.2  # +2 cm in y at the tool point
    out[1, 0, 4] = 0.1  # a 0.05 rad turn about y: the tool point stays, the flange swings
    with torch.no_grad():
        target = layer(out, torch.zeros(2, 7))[:, 0].double().numpy() / scale + kin.HOME
    tcp0 = kin.tool_point(kin.HOME, offset)
    moved = kin.tool_point(target, offset) - tcp0  # [2,3]
    assert np.allclose(moved[0], [0.0, 0.02, 0.0], atol=0.002), moved
    assert np.linalg.norm(moved[1]) < 0.002, moved
    flange = kin.fk(target[1])[0] - kin.fk(kin.HOME)[0]
    assert np.linalg.norm(flange) > 0.004  # the turn is about the tool point, not the flange
    # the model passes model.tcp_offset to its head
    model = TransformerJointGripperNoDQ(ModelConfig(**{**TASK.__dict__, 'tcp_offset': offset}))
    assert model.task_space is not None
    assert torch.allclose(model.task_space.ee_origin, layer.ee_origin)


def test_task_space_model_needs_its_joint_normalization():
    import numpy as np

    model = TransformerJointGripperNoDQ(TASK).eval()
    rgb, depth, q = golden_inputs()
    with torch.no_grad(), pytest.raises(ValueError, match='joint normalization'):
        model(rgb, depth, q, 12)
    with pytest.raises(ValueError, match='needs the Gen3 joints'):
        model.set_joint_normalization(np.zeros(7), np.ones(7), [f'j{i}' for i in range(7)])
    with pytest.raises(ValueError, match='scale > 0'):
        model.set_joint_normalization(np.zeros(7), np.zeros(7))
    model.set_joint_normalization(np.zeros(7), np.full(7, 0.3))
    with torch.no_grad():
        out = model(rgb, depth, q, 12)
        tokens = model.encode_frames(rgb[0], depth[0], q[0])[None]
        with pytest.raises(ValueError, match='needs q_last'):
            model.decode_tokens(tokens, 12)
    assert out.shape == (2, 12, 7) and bool(((out >= -1) & (out <= 1)).all())
    assert model.head[2].out_features == 13
    # The normalization is not a weight: the checkpoint's stats set it on every load.
    assert not any('center' in k or 'scale' in k for k in model.state_dict())
