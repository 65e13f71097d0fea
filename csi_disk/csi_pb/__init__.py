"""Generated CSI v1 protocol modules (spec 1.13.0, package ``csi.v1``).

Do not edit ``csi_pb2*.py`` by hand: change ``protos/csi.proto`` and run
``python -m csi_disk_tools.protogen``. Import as::

    from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
"""

CSI_SPEC_VERSION = "1.13.0"
