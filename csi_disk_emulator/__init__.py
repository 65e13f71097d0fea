"""A stand-in for ECS and its instance metadata service, speaking the real wire format.

Driver code never imports this package; tests and the demo start it as a separate program.
"""
