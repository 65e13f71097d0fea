"""The ECS port: everything the driver asks of the cloud, behind a small Protocol."""
