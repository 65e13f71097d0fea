"""The gRPC server: endpoint handling, the one interceptor, and graceful shutdown.

Every call passes through ``CallInterceptor``: it gives the call a request id, logs the
request and reply with secrets replaced, records metrics, and is the single place where
domain errors (``csi_disk.errors``) become gRPC status codes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from prometheus_client import Counter, Gauge, Histogram

from csi_disk import errors
from csi_disk.csi_pb import csi_pb2
from csi_disk.logs import scrub
from csi_disk.quoting import shorten

log = logging.getLogger(__name__)

REDACTED = "<redacted>"
# A status message travels in a header, where gRPC's default limit on the client is 8 KiB:
# longer, and the caller sees RESOURCE_EXHAUSTED instead of the code the driver chose. User
# values are cut where they are quoted (csi_disk.quoting); this bounds the rest (ECS's text).
MAX_STATUS_MESSAGE = 2048

CALLS = Counter(
    "csi_disk_grpc_requests_total", "CSI calls served, by method and gRPC code", ["method", "code"]
)
LATENCY = Histogram(
    "csi_disk_grpc_request_duration_seconds",
    "CSI call latency, by method and gRPC code",
    ["method", "code"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT = Gauge("csi_disk_grpc_requests_in_flight", "CSI calls being served", ["method"])


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "unix" or "tcp"
    address: str  # a socket path or host:port

    @property
    def grpc_target(self) -> str:
        return f"unix://{self.address}" if self.scheme == "unix" else self.address


def parse_endpoint(endpoint: str) -> Endpoint:
    """Accept ``unix:///abs/path``, ``unix:/abs/path`` and ``tcp://host:port``."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://") :]
    elif endpoint.startswith("unix:"):
        path = endpoint[len("unix:") :]
    elif endpoint.startswith("tcp://"):
        address = endpoint[len("tcp://") :]
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"endpoint {endpoint!r}: expected tcp://host:port")
        return Endpoint("tcp", address)
    else:
        raise ValueError(f"endpoint {endpoint!r}: expected unix:///path or tcp://host:port")
    if not path.startswith("/"):
        raise ValueError(f"endpoint {endpoint!r}: the socket path must be absolute")
    return Endpoint("unix", path)


class SocketInUse(RuntimeError):
    """Another live process serves the socket; starting would steal its endpoint."""


def prepare_unix_socket(path: str) -> None:
    """Remove a stale socket file; refuse when a live process still answers on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover from a crashed process
        log.info("removed stale socket %s", path)
        return
    finally:
        probe.close()
    raise SocketInUse(f"another process is serving {path}")


# ---------------------------------------------------------------- secrets in messages


def _is_secret_field(field: Any) -> bool:
    options = field.GetOptions()
    try:
        if options.Extensions[csi_pb2.csi_secret]:
            return True
    except (KeyError, AttributeError):
        pass
    return field.name == "secrets"


def redacted_copy(message: Message) -> Message:
    """A copy of ``message`` whose secret fields (``csi_secret``) have their values replaced."""
    copy = type(message)()
    copy.CopyFrom(message)
    _redact(copy)
    return copy


def _redact(message: Message) -> None:
    for field, value in message.ListFields():
        if _is_secret_field(field):
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key in list(value.keys()):
                    value[key] = REDACTED
            elif field.type == field.TYPE_STRING:
                setattr(message, field.name, REDACTED)
            else:
                message.ClearField(field.name)
            continue
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        if _is_repeated(field):
            for item in value:
                _redact(item)
        else:
            _redact(value)


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28; ``label`` went away
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _shorten_strings(message: Message) -> None:
    """Cut every string in ``message`` as ``quoting.shorten`` does, string maps' keys too
    (CSI's maps all map strings to strings)."""
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entries = dict(value)
            if all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
                value.clear()
                value.update({shorten(k): shorten(v) for k, v in entries.items()})
        elif field.type == field.TYPE_STRING:
            if _is_repeated(field):
                value[:] = [shorten(item) for item in value]
            else:
                setattr(message, field.name, shorten(value))
        elif field.message_type is not None:
            for item in value if _is_repeated(field) else [value]:
                _shorten_strings(item)


def describe(message: Message) -> str:
    """One-line JSON of a message for logs: secrets replaced, long strings cut."""
    try:
        copy = redacted_copy(message)
        _shorten_strings(copy)
        return json_format.MessageToJson(copy, indent=None, preserving_proto_field_name=True)
    except Exception as err:  # logging must never fail a call
        return f"<{type(message).__name__}: not printable: {type(err).__name__}>"


# ---------------------------------------------------------------- the interceptor


def grpc_code(error: errors.DriverError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)


# Calls the kubelet, the sidecars and the livenessprobe make over and over, answered from
# memory: logged at debug level and counted, without a request id (unless a log line needs
# one), a latency histogram or an in-flight gauge.
CHEAP = frozenset(
    {
        "GetPluginInfo",
        "GetPluginCapabilities",
        "Probe",
        "ControllerGetCapabilities",
        "NodeGetCapabilities",
        "NodeGetInfo",
    }
)
# Calls logged at debug level: the cheap ones, and the kubelet's periodic volume stats.
QUIET = CHEAP | {"NodeGetVolumeStats"}


class CallInterceptor(grpc.ServerInterceptor):
    """Logging, metrics and error mapping for every unary call."""

    def __init__(self) -> None:
        # Full method name -> the wrapped handler: built once, not on every call.
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        wrapped = self._handlers.get(handler_call_details.method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary
        if method in CHEAP:
            served = CALLS.labels(method, grpc.StatusCode.OK.name)

            def serve(request: Message, context: grpc.ServicerContext) -> Message:
                if log.isEnabledFor(logging.DEBUG):
                    return self._serve(method, inner, request, context)
                try:
                    reply = inner(request, context)
                except grpc.RpcError:
                    raise
                except Exception as err:
                    code, message = self._status(method, uuid.uuid4().hex[:12], err)
                    CALLS.labels(method, code.name).inc()
                    context.abort(code, message)
                    raise  # unreachable: abort raises
                served.inc()
                return reply

        else:

            def serve(request: Message, context: grpc.ServicerContext) -> Message:
                return self._serve(method, inner, request, context)

        wrapped = grpc.unary_unary_rpc_method_handler(
            serve,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._handlers[handler_call_details.method] = wrapped
        return wrapped

    def _serve(
        self,
        method: str,
        inner: Callable[[Message, grpc.ServicerContext], Message],
        request: Message,
        context: grpc.ServicerContext,
    ) -> Message:
        request_id = uuid.uuid4().hex[:12]
        extra = {"request_id": request_id, "method": method}
        level = logging.DEBUG if method in QUIET else logging.INFO
        verbose = log.isEnabledFor(level)  # describing messages costs; skip it when unseen
        if verbose:
            log.log(level, "[%s] %s request %s", request_id, method, describe(request), extra=extra)
        start = time.monotonic()
        code = grpc.StatusCode.OK
        IN_FLIGHT.labels(method).inc()
        try:
            reply = inner(request, context)
            if verbose:
                log.log(level, "[%s] %s reply %s", request_id, method, describe(reply), extra=extra)
            return reply
        except grpc.RpcError:
            code = context.code() if hasattr(context, "code") and context.code() else code
            raise
        except Exception as err:
            code, message = self._status(method, request_id, err)
            context.abort(code, message)
            raise  # unreachable: abort raises
        finally:
            IN_FLIGHT.labels(method).dec()
            elapsed = time.monotonic() - start
            CALLS.labels(method, code.name).inc()
            LATENCY.labels(method, code.name).observe(elapsed)

    @staticmethod
    def _status(method: str, request_id: str, err: Exception) -> tuple[grpc.StatusCode, str]:
        """The status a call that raised ``err`` ends with, logged: the one place where
        errors become gRPC codes."""
        extra = {"request_id": request_id, "method": method}
        if isinstance(err, errors.DriverError):
            code = grpc_code(err)
            message = scrub(err.message)
            if len(message) > MAX_STATUS_MESSAGE:
                message = message[: MAX_STATUS_MESSAGE - 20] + "... (message cut)"
            log.warning(
                "[%s] %s failed: %s %s", request_id, method, code.name, message, extra=extra
            )
            return code, message
        if isinstance(err, NotImplementedError):
            # The generated servicer's default for a call this plugin does not offer.
            return grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this plugin"
        # A bug: keep the traceback in the log, not in the reply.
        log.error(
            "[%s] %s failed unexpectedly: %s\n%s",
            request_id,
            method,
            type(err).__name__,
            scrub(traceback.format_exc()),
            extra=extra,
        )
        return grpc.StatusCode.INTERNAL, f"internal error in {method} (request {request_id})"


# ---------------------------------------------------------------- late binding


class Deferred:
    """Stands in for a servicer until the plugin has initialised.

    The generated ``add_*Servicer_to_server`` functions look methods up once, at
    registration; this object hands them dispatchers that find the real servicer at call
    time, so the socket (and Probe) answer while the cloud or metadata is still unreachable.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._target: Any = None
        self._ready = threading.Event()

    def bind(self, target: Any) -> None:
        self._target = target
        self._ready.set()

    def __getattr__(self, name: str) -> Callable[[Message, grpc.ServicerContext], Message]:
        if name.startswith("_"):
            raise AttributeError(name)

        def dispatch(request: Message, context: grpc.ServicerContext) -> Message:
            if not self._ready.is_set():
                raise errors.Unavailable(f"the {self._what} service is still initialising")
            return getattr(self._target, name)(request, context)

        return dispatch


# ---------------------------------------------------------------- the server


class Server:
    """A started gRPC server bound to one endpoint."""

    def __init__(self, endpoint: str, workers: int) -> None:
        self.endpoint = parse_endpoint(endpoint)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csi"),
            interceptors=[CallInterceptor()],
            # Never let gRPC answer RESOURCE_EXHAUSTED on its own: the provisioner reads that
            # code as "no capacity in this topology" and reschedules the pod.
            maximum_concurrent_rpcs=None,
            options=[("grpc.so_reuseport", 0)],
        )

    @property
    def grpc_server(self) -> grpc.Server:
        return self._server

    def start(self) -> None:
        if self.endpoint.scheme == "unix":
            prepare_unix_socket(self.endpoint.address)
            old_umask = os.umask(0o117)  # the socket is created 0660
            try:
                self._bind()
            finally:
                os.umask(old_umask)
            os.chmod(self.endpoint.address, 0o660)
        else:
            self._bind()
        log.info("serving CSI on %s", self.endpoint.grpc_target)

    def _bind(self) -> None:
        port = self._server.add_insecure_port(self.endpoint.grpc_target)
        if port == 0:
            raise OSError(f"cannot listen on {self.endpoint.grpc_target}")
        self._server.start()

    def stop(self, grace: float) -> None:
        """Stop accepting calls, let in-flight ones finish for up to ``grace`` seconds."""
        done = self._server.stop(grace)
        done.wait(grace + 5)
        if self.endpoint.scheme == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.endpoint.address)
