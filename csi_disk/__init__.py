"""csi-disk: a CSI driver for Alibaba Cloud ECS cloud disks."""

from importlib import metadata

DRIVER_NAME = "diskplugin.csi.alibabacloud.com"

try:
    __version__ = metadata.version("csi-disk")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
