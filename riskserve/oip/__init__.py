"""Open Inference Protocol (KServe v2) for riskserve: REST under /v2 and the gRPC service.

`codec` maps protocol tensors to validated feature columns and predictions back to output
tensors; `rest` and `grpc_server` are thin protocol adapters over it and over the same
registry, validation, auth and metrics as /v1. Submodules are imported explicitly so that
importing this package never loads grpc or the generated stubs.
"""
