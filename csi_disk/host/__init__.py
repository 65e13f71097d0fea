"""The OS port: block devices, filesystems and mounts on the node's host.

``port.Host`` is what the node service asks of its host, ``linux.LinuxHost`` answers it on a
real node, and ``safe_mount.SafeFormatAndMount`` decides over it when a disk may be
formatted, checked and grown.
"""
