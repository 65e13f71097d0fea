"""The demo and what it runs on: programs beside the driver, never imported by it.

``stack`` starts the emulator and ``csi-disk serve`` processes on one machine, ``kube`` runs a
real Kubernetes control plane with the real CSI sidecars over them, ``demo`` tells the story
on it with kubectl.
"""
