"""Layer 0: typed errors, Gen3 kinematics, the image codec, configuration, time stamps."""
