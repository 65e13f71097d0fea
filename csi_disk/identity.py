"""CSI Identity: who the plugin is, what it can do, and whether it is ready."""

from __future__ import annotations

import threading

import grpc
from google.protobuf import wrappers_pb2

from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc

PluginCapability = csi_pb2.PluginCapability


class Readiness:
    """Set once when the plugin has initialised; never cleared.

    Probe reports this flag and does no I/O: the livenessprobe sidecar restarts a plugin
    that answers not-ready, and a passing cloud outage is no reason to restart.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "initialising"

    def set(self) -> None:
        self.reason = ""
        self._event.set()

    def note(self, reason: str) -> None:
        """Record why initialisation has not finished yet (shown in logs)."""
        if not self._event.is_set():
            self.reason = reason

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class IdentityService(csi_pb2_grpc.IdentityServicer):
    def __init__(
        self,
        *,
        name: str,
        version: str,
        readiness: Readiness,
        online_expansion: bool = False,
    ) -> None:
        self._name = name
        self._version = version or "0.0.0"
        self._readiness = readiness
        self._online_expansion = online_expansion

    def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name=self._name, vendor_version=self._version)

    def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        """The plugin's capabilities as deployed, the same from every process whatever it
        serves: the CSI spec asks so, and a CO or csi-sanity asking a node plugin learns
        that a controller exists (and attaches, in controller attach mode)."""
        service = PluginCapability.Service
        caps = [service.CONTROLLER_SERVICE, service.VOLUME_ACCESSIBILITY_CONSTRAINTS]
        result = [PluginCapability(service=PluginCapability.Service(type=c)) for c in caps]
        if self._online_expansion:
            result.append(
                PluginCapability(
                    volume_expansion=PluginCapability.VolumeExpansion(
                        type=PluginCapability.VolumeExpansion.ONLINE
                    )
                )
            )
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=result)

    def Probe(
        self, request: csi_pb2.ProbeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ProbeResponse:
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=self._readiness.is_set()))
