"""Layer 3: rosbag2 -> npz (reader, frame sync, collector, converter, command line)."""
