"""A Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (TLS, Node and RBAC
authorization, NodeRestriction, service-account tokens), kube-controller-manager (each
controller with its own service account, as kubeadm runs it) and kube-scheduler.

Every process is started with PR_SET_PDEATHSIG, so it dies with the program that started it,
and is stopped by ``close``; nothing listens beyond loopback and every port is picked free at
start.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from csi_disk_demo.kube import binaries
from csi_disk_demo.kube.api import Api, ApiError, Credentials
from csi_disk_demo.kube.pki import Authority, KeyPair, service_account_keys
from csi_disk_emulator.process import dying_with_parent, stop_process

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
# Controllers this cluster has no use for: no pod network (node-ipam), no bootstrap tokens.
DISABLED_CONTROLLERS = ("node-ipam-controller",)
# How long a node may stay silent before the node lifecycle controller marks it NotReady
# (50 s by default); the node agents renew their Lease every NODE_LEASE_RENEW seconds.
NODE_MONITOR_GRACE = "16s"


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def write_kubeconfig(
    path: Path, server: str, ca: Path, *, pair: KeyPair | None = None, token: str | None = None
) -> Path:
    user: dict[str, str] = {}
    if pair is not None:
        user = {"client-certificate": str(pair.cert), "client-key": str(pair.key)}
    if token is not None:
        user = {"token": token}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "csi-disk-demo",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "default", "context": {"cluster": "csi-disk-demo", "user": "user"}}],
        "current-context": "default",
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


class ControlPlane:
    """The control plane of one run, its files under ``state_dir``."""

    def __init__(self, state_dir: Path, *, feature_gates: Sequence[str] = ()) -> None:
        self.state_dir = state_dir
        self.logs = state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pki = Authority(state_dir / "pki")
        self.feature_gates = list(feature_gates)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        self.server = f"https://{LOOPBACK}:{self.port}"
        self.admin_pair = self.pki.client("admin", "csi-disk-demo-admin", ("system:masters",))
        self.admin_kubeconfig = write_kubeconfig(
            state_dir / "admin.kubeconfig", self.server, self.pki.cert, pair=self.admin_pair
        )
        self.admin = Api(
            self.server, Credentials(self.pki.cert, self.admin_pair.cert, self.admin_pair.key)
        )

    # ------------------------------------------------------------------ processes

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                dying_with_parent(argv), stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        return process

    def start(self) -> None:
        etcd_port, peer_port = free_port(), free_port()
        etcd_url, peer_url = f"http://{LOOPBACK}:{etcd_port}", f"http://{LOOPBACK}:{peer_port}"
        self._start("etcd", [
            binaries.program("etcd", "etcd"),
            "--name", "default",
            "--data-dir", str(self.state_dir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])  # fmt: skip
        serving = self.pki.server(
            "apiserver",
            [LOOPBACK, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        )
        sa_private, sa_public = service_account_keys(self.pki.directory)
        gates = ["--feature-gates", ",".join(self.feature_gates)] if self.feature_gates else []
        self._start("kube-apiserver", [
            binaries.program("kubernetes", "kube-apiserver"),
            "--etcd-servers", etcd_url,
            "--bind-address", LOOPBACK, "--advertise-address", LOOPBACK,
            "--secure-port", str(self.port),
            # The default reconciler refuses a loopback address for the kubernetes Service.
            "--endpoint-reconciler-type", "none",
            "--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
            "--client-ca-file", str(self.pki.cert),
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction",
            "--service-account-issuer", SERVICE_ACCOUNT_ISSUER,
            "--service-account-key-file", str(sa_public),
            "--service-account-signing-key-file", str(sa_private),
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--cert-dir", str(self.state_dir / "apiserver-certs"),
            "--profiling=false",
            *gates,
        ])  # fmt: skip
        self.wait_ready()
        kcm = self.pki.client("kube-controller-manager", "system:kube-controller-manager")
        kcm_config = write_kubeconfig(
            self.state_dir / "kcm.kubeconfig", self.server, self.pki.cert, pair=kcm
        )
        self._start("kube-controller-manager", [
            binaries.program("kubernetes", "kube-controller-manager"),
            "--kubeconfig", str(kcm_config),
            "--bind-address", LOOPBACK, "--secure-port", "0",
            "--leader-elect=false",
            "--use-service-account-credentials",
            "--service-account-private-key-file", str(sa_private),
            "--root-ca-file", str(self.pki.cert),
            "--controllers", ",".join(["*", *(f"-{c}" for c in DISABLED_CONTROLLERS)]),
            "--node-monitor-period", "2s",
            "--node-monitor-grace-period", NODE_MONITOR_GRACE,
            "--profiling=false",
            *gates,
        ])  # fmt: skip
        scheduler = self.pki.client("kube-scheduler", "system:kube-scheduler")
        scheduler_config = write_kubeconfig(
            self.state_dir / "scheduler.kubeconfig", self.server, self.pki.cert, pair=scheduler
        )
        self._start("kube-scheduler", [
            binaries.program("kubernetes", "kube-scheduler"),
            "--kubeconfig", str(scheduler_config),
            "--bind-address", LOOPBACK, "--secure-port", "0",
            "--leader-elect=false",
            "--profiling=false",
            *gates,
        ])  # fmt: skip
        # The controllers are up once the service-account controller has made `default`.
        self.wait_for(
            lambda: self.admin.find("/api/v1/namespaces/default/serviceaccounts/default"),
            "the default ServiceAccount",
        )

    def check_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def wait_ready(self) -> None:
        def ready() -> bool:
            try:
                return self.admin.request("GET", "/readyz", raw=True) == "ok"
            except (ApiError, OSError, ValueError):
                return False

        self.wait_for(ready, "kube-apiserver /readyz")

    def wait_for(
        self, condition: Callable[[], object], what: str, timeout: float = START_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            if condition():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not there after {timeout:.0f}s")
            time.sleep(0.2)

    def close(self) -> None:
        for name in reversed(list(self.processes)):
            stop_process(self.processes.pop(name), timeout=20)

    # ------------------------------------------------------------------ kubectl

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """kubectl as the cluster's administrator."""
        done = subprocess.run(
            [binaries.program("kubernetes", "kubectl"), "--kubeconfig", str(self.admin_kubeconfig),
             *args],
            input=stdin, capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()[-1500:]}")
        return done

    def token(self, namespace: str, service_account: str, duration: str = "2h") -> str:
        """A bound token of a ServiceAccount (TokenRequest), as kubelet mounts into its pods."""
        return self.kubectl(
            "create", "token", service_account, "-n", namespace, "--duration", duration
        ).stdout.strip()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
