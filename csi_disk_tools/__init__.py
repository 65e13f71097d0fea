"""Build-time helpers for working on the driver (regenerating the CSI modules); the daemon
never imports them, and the image does not carry them."""
