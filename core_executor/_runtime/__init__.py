"""The container runtime: what runs inside a container (`python -m core_executor._runtime`)."""
