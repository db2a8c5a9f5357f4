"""The fabric: gRPC API, control plane, worker agent, providers and web gateway."""
