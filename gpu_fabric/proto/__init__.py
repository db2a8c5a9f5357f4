"""The gRPC API of the fabric: generated stubs for common, client and worker protos."""
