"""The demo and its Kubernetes stand-in: programs beside the driver, never imported by it.

``stack`` starts the emulator and ``csi-disk serve`` processes on one machine, ``cluster``
plays the Kubernetes side over the driver's sockets, ``demo`` tells the story with both.
"""
