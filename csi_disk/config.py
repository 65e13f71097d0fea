"""The daemon's settings, resolved once from flags and environment by ``cli``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from csi_disk import DRIVER_NAME
from csi_disk.topology import parse_disk_categories

MODES = ("all", "controller", "node")
ATTACH_MODES = ("node", "controller")


@dataclass(frozen=True)
class Config:
    endpoint: str = "unix:///csi/csi.sock"
    mode: str = "all"
    driver_name: str = DRIVER_NAME
    attach_mode: str = "node"
    ecs_endpoint: str = ""  # empty: the public endpoint of the region
    metadata_endpoint: str = "http://100.100.100.200"
    region: str = ""  # empty: read from the metadata service
    zone: str = ""  # empty: read from the metadata service (the controller's default zone)
    node_id: str = ""  # empty: the instance id from the metadata service
    metrics_address: str = ""  # host:port; empty disables the metrics endpoint
    log_level: str = "info"
    log_format: str = "text"
    kubelet_dir: Path = Path("/var/lib/kubelet")
    device_root: Path = Path("/")  # host-root prefix for /dev and /sys lookups
    max_volumes_per_node: int = 0  # 0: derived from the instance type
    access_key_id: str = ""
    access_key_secret: str = ""
    sts_token_file: str = ""
    ram_role: str = ""
    workers: int = 128  # the sidecars run up to 100 workers each
    drain_timeout: float = 30.0
    operation_timeout: float = 300.0  # bound on one call's waits, below its caller's deadline
    detach_before_delete: bool = False
    allow_takeover: bool = False  # attach a disk still held by a Running instance
    api_quotas: str = ""  # "Action=calls-per-minute,...": ECS API budgets over the defaults
    disk_categories: str = ""  # empty: ask ECS which categories this node attaches
    stock_refresh_interval: float = 60.0  # seconds a read of what ECS has in stock is reused

    @property
    def serves_controller(self) -> bool:
        return self.mode in ("all", "controller")

    @property
    def serves_node(self) -> bool:
        return self.mode in ("all", "node")


def check(config: Config) -> None:
    """ValueError naming the first setting that cannot work, before anything starts."""
    if config.workers < 1:
        raise ValueError(f"workers must be at least 1, not {config.workers}")
    if config.drain_timeout < 0:
        raise ValueError(f"drain-timeout must not be negative, not {config.drain_timeout}")
    if config.operation_timeout <= 0:
        raise ValueError(f"operation-timeout must be positive, not {config.operation_timeout}")
    parse_disk_categories(config.disk_categories)
    if config.stock_refresh_interval <= 0:
        raise ValueError(
            f"stock-refresh-interval must be positive, not {config.stock_refresh_interval}"
        )
    if config.max_volumes_per_node < 0:
        raise ValueError("max-volumes-per-node must not be negative")
    for name, path in (("kubelet-dir", config.kubelet_dir), ("device-root", config.device_root)):
        if not str(path) or not path.is_absolute():
            raise ValueError(f"{name} must be an absolute path, not {str(path)!r}")
    if config.metrics_address:
        _host, sep, port = config.metrics_address.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"metrics-address {config.metrics_address!r}: expected host:port or :port"
            )

