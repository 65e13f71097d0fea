"""``csi-disk serve``: wire the services together, serve, and shut down cleanly.

The socket comes up at once and Identity answers from the first moment; the controller and
node services bind when their dependencies (metadata, credentials, one ECS call) have
answered, retried with backoff in the background. Until then Probe says not ready.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from csi_disk import __version__, logs
from csi_disk.config import Config
from csi_disk.csi_pb import csi_pb2_grpc
from csi_disk.identity import IdentityService, Readiness
from csi_disk.server import Deferred, Server, SocketInUse

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What initialisation produced, and what to close on shutdown."""

    controller: Any = None
    node: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # shutting down: report and go on
                log.exception("error while closing")


def build_services(config: Config) -> Services:
    """Resolve identity, credentials and the cloud client; raise to be retried later."""
    from csi_disk.cloud.credentials import resolve_provider
    from csi_disk.cloud.ecs import EcsCloud
    from csi_disk.cloud.metadata import MetadataClient
    from csi_disk.cloud.quotas import ApiQuotas
    from csi_disk.cloud.waiter import DiskWaiter

    services = Services()
    metadata = MetadataClient(config.metadata_endpoint)
    region = config.region or metadata.region_id()
    # A node in controller attach mode never attaches, but asks ECS (read-only, through its
    # instance RAM role) how many disks its instance type takes and which categories it
    # attaches, unless it is told.
    needs_cloud = (
        config.serves_controller
        or config.attach_mode == "node"
        or config.max_volumes_per_node <= 0
        or not config.disk_categories
    )
    cloud = waiter = None
    if needs_cloud:
        credentials = resolve_provider(config, metadata=metadata)
        credentials.get()  # resolved now, so a missing credential shows as not ready
        cloud = EcsCloud(
            region,
            credentials,
            endpoint=config.ecs_endpoint,
            pool_size=config.workers,
            quotas=ApiQuotas.from_text(config.api_quotas),
        )
        cloud.probe()  # one ECS call answered: credentials and endpoint work
        waiter = DiskWaiter(cloud)
        services.closers.append(waiter.close)
    if config.serves_controller:
        from csi_disk.controller import ControllerService

        zone = config.zone or metadata.zone_id()
        services.controller = ControllerService(config, cloud, waiter, default_zone=zone)
    if config.serves_node:
        from csi_disk.node import NodeService

        shared = services.controller.attacher if services.controller is not None else None
        services.node = NodeService.from_metadata(
            config, metadata, cloud, waiter, region=region, attacher=shared
        )
        services.closers.append(services.node.close)
    return services


def _initialise(
    config: Config,
    readiness: Readiness,
    slots: dict[str, Deferred],
    stopping: threading.Event,
    holder: list[Services],
    build: Callable[[Config], Services],
) -> None:
    delay = 0.5
    while not stopping.is_set():
        try:
            services = build(config)
        except Exception as err:
            readiness.note(logs.scrub(str(err)))
            log.warning(
                "initialisation failed, retrying in %.1fs: %s: %s",
                delay,
                type(err).__name__,
                logs.scrub(str(err)),
            )
            stopping.wait(delay)
            delay = min(delay * 2, 30.0)
            continue
        holder.append(services)
        if "controller" in slots:
            slots["controller"].bind(services.controller)
        if "node" in slots:
            slots["node"].bind(services.node)
        readiness.set()
        log.info("initialised: ready")
        return


def run(config: Config, build: Callable[[Config], Services] = build_services) -> int:
    logs.configure(config.log_level, config.log_format)
    log.info(
        "csi-disk %s starting: mode=%s attach-mode=%s driver=%s",
        __version__,
        config.mode,
        config.attach_mode,
        config.driver_name,
    )
    readiness = Readiness()
    try:
        server = Server(config.endpoint, config.workers)
    except ValueError as err:
        log.error("cannot serve: %s", err)
        return 1
    identity = IdentityService(
        name=config.driver_name,
        version=__version__,
        readiness=readiness,
        online_expansion=True,
    )
    csi_pb2_grpc.add_IdentityServicer_to_server(identity, server.grpc_server)
    slots: dict[str, Deferred] = {}
    if config.serves_controller:
        slots["controller"] = Deferred("controller")
        csi_pb2_grpc.add_ControllerServicer_to_server(slots["controller"], server.grpc_server)
    if config.serves_node:
        slots["node"] = Deferred("node")
        csi_pb2_grpc.add_NodeServicer_to_server(slots["node"], server.grpc_server)

    if config.metrics_address:
        from prometheus_client import start_http_server

        host, _, port = config.metrics_address.rpartition(":")
        try:
            start_http_server(int(port), addr=host or "0.0.0.0")
        except OSError as err:  # e.g. the port is taken on a hostNetwork node
            log.error("cannot serve metrics on %s: %s", config.metrics_address, err)
            return 1
        log.info("metrics on http://%s/metrics", config.metrics_address)

    try:
        server.start()
    except (SocketInUse, OSError, ValueError) as err:
        log.error("cannot serve: %s", err)
        return 1

    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s: draining", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    holder: list[Services] = []
    init = threading.Thread(
        target=_initialise,
        args=(config, readiness, slots, stopping, holder, build),
        name="initialise",
        daemon=True,
    )
    init.start()
    while not stopping.wait(1.0):
        pass
    server.stop(config.drain_timeout)
    for services in holder:
        services.close()
    log.info("stopped")
    return 0
