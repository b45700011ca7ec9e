"""The in-process closed loop (``sim.closed_loop``) with the expert behind the policy interface."""

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.closed_loop import ExpertPolicy, run_policy_episode
from kinova_policy_ros.sim.env import Gen3Sim
import numpy as np
import pytest


@pytest.fixture(scope='module')
def sim():
    s = Gen3Sim()
    yield s
    s.close()


def test_expert_policy_succeeds_through_the_policy_node_semantics(sim):
    policy = ExpertPolicy(sim)
    result = run_policy_episode(sim, policy, seed=21, duration_s=6.5, command_delay_s=0.02)
    assert result.success and result.success_5cm, result.summary()
    assert result.time_to_success_s is not None and result.time_to_success_s < 6.5
    n = len(result.times_s)
    assert n == round(6.5 / policy.dt) + 1 and result.q.shape == (n, 7)
    assert np.all(np.diff(result.times_s) > 0)
    assert result.distance[0] > 0.2 and result.distance[-1] == result.final_distance
    # a new chunk every action_horizon ticks; its start continues the running one smoothly
    assert len(result.chunk_velocity_jumps) >= n // policy.action_horizon - 2
    assert result.chunk_velocity_jumps.max() < 0.3
    # the expert's plans: executed within their predictions, no slow-down they did not ask for
    fine = result.fine_t_s.size
    assert fine > n and result.fine_in_prediction.shape == (fine,)
    assert result.fine_in_prediction[fine // 10:].mean() > 0.9
    assert result.summary()['handover_dips'] == 0
    again = run_policy_episode(sim, policy, seed=21, duration_s=6.5, command_delay_s=0.02)
    np.testing.assert_array_equal(again.q, result.q)  # deterministic for a seed


def test_a_policy_that_does_not_move_fails(sim):
    class Still(ExpertPolicy):
        def predict(self) -> np.ndarray:
            assert self._q is not None
            return np.tile(self._q, (self.pred_horizon, 1))

    result = run_policy_episode(sim, Still(sim), seed=3, duration_s=1.0)
    assert not result.success and result.final_distance > 0.2
    assert np.abs(result.q - result.q[0]).max() < 1e-3


def test_rejects_mismatched_joints_and_delays(sim):
    policy = ExpertPolicy(sim)
    policy.joint_names = ('a', 'b')  # type: ignore[assignment]
    with pytest.raises(ConfigError, match='joint_names'):
        run_policy_episode(sim, policy, seed=0, duration_s=0.5)
    with pytest.raises(ConfigError, match='command_delay_s'):
        run_policy_episode(sim, ExpertPolicy(sim), seed=0, duration_s=0.5, command_delay_s=0.5)


def test_runs_a_policy_runner_checkpoint(sim, tmp_path):
    """The loop accepts the real ``PolicyRunner`` (tiny random model) and bounds its commands."""
    synthetic = pytest.importorskip('kinova_policy_ros.testing.synthetic')
    from kinova_policy_ros.policy.inference import PolicyRunner

    ckpt = synthetic.make_random_checkpoint(
        tmp_path / 'ckpt',
        image_hw=(24, 32),
        dt=1 / 15,
        d_model=32,
        dim_feedforward=64,
        conv_channels=(8, 16),
        img_feat_dim=16,
        q_feat_dim=16,
    )
    runner = PolicyRunner.from_checkpoint(ckpt, device='cpu')
    result = run_policy_episode(sim, runner, seed=5, duration_s=1.5, velocity_scale=0.5)
    assert np.isfinite(result.q).all() and np.isfinite(result.distance).all()
    q = kin.unwrap_continuous(result.q)
    speed = np.abs(np.diff(q, axis=0)) / np.diff(result.times_s)[:, None]
    # a random policy jitters; the commands are bounded and the arm never exceeds its limits
    assert (speed <= kin.VELOCITY_LIMITS * 1.05).all()
