"""Generated protobuf and gRPC code for the gRPC hook transport.

``hook.proto`` is the source; ``hook_pb2.py``, ``hook_pb2.pyi`` and
``hook_pb2_grpc.py`` are generated from it by ``regenerate.sh`` and committed.
Importing them needs ``grpcio`` (the ``grpc`` extra) and ``protobuf``.
"""
