"""
Simulated Kinova Gen3 with a fixed RGB-D camera (MuJoCo), a scripted expert, closed-loop metrics.

The pure-Python layer (``mjcf``, ``env``, ``trajectory``, ``expert``, ``closed_loop``,
``eval_metrics``, ``eval_plots``) imports no ROS package; ``sim.ros`` holds the ROS 2 adapters on
top of it (``sim_node``, ``expert_node``, ``recorder``, ``record_demos``, ``processes``,
``services``, ``eval_recorder``, ``eval_episode``, ``dds_eval``).

MuJoCo chooses its OpenGL back end when it is imported: headless EGL unless ``MUJOCO_GL`` says
otherwise (``osmesa``, ``glfw``).
"""

import os

os.environ.setdefault('MUJOCO_GL', 'egl')
