from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'kinova_policy_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), glob('launch/*.launch.py')),
        (
            os.path.join('share', package_name, 'config'),
            glob('config/*.yaml') + glob('config/*.xml'),
        ),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='kinova_policy_ros maintainers',
    maintainer_email='maintainers@kinova-policy-ros.invalid',
    description='Transformer joint-trajectory policies for Kinova Gen3 arms on ROS 2.',
    license='Apache-2.0',
    extras_require={
        'test': ['pytest'],
    },
    entry_points={
        'console_scripts': [
            'policy_node = kinova_policy_ros.ros.policy_node:main',
            'bag_to_npz = kinova_policy_ros.bag.cli:main',
            'sim_node = kinova_policy_ros.sim.ros.sim_node:main',
            'sim_expert = kinova_policy_ros.sim.ros.expert_node:main',
            'record_demos = kinova_policy_ros.sim.ros.record_demos:main',
            'train_policy = kinova_policy_ros.training.train:main',
            'evaluate_policy = kinova_policy_ros.training.evaluate:main',
            'policy_demo = kinova_policy_ros.demo:main',
        ],
    },
)
