"""The seed story on a real Kubernetes control plane.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from their Go modules
(``.ci/go``) run on 127.0.0.1; the project's deploy/ objects are applied with kubectl; each
sidecar runs as a host process with its ServiceAccount's token and the flags the manifests
give it. The only stand-in is the node agent (``node_agent``), which plays kubelet and the
container runtime for volumes.
"""
