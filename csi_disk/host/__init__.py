"""The OS port: block devices, filesystems and mounts on the node's host."""
