"""Per-call usage: each input attempt's time on a container, priced like the billing ledger prices it."""
from __future__ import annotations

from typing import NamedTuple

from gpu_fabric.proto import client_pb2


class Rate(NamedTuple):
    """What one container costs: its GPU type and count, and its share of its worker's price per
    hour (the price of its open charge in the billing ledger; a local worker's is 0)."""

    gpu_type: str
    gpu_count: int
    price_per_hour: float


CPU_ONLY = Rate("", 0, 0.0)


def container_rate(ledger, container) -> Rate:
    """The rate of `container` from its open ledger charge (CPU-only and free when it has none)."""
    charge = ledger.open.get(container.container_id)
    gpus = len(container.placement.gpu_indices)
    gpu_type = container.placement.gpu_type if gpus else ""
    return Rate(gpu_type, gpus, float(charge.price_per_hour) if charge is not None else 0.0)


class CallUsage:
    """A call's finished attempts, summed per rate, and its lost (uncharged) attempts.

    Updated on the control plane's event loop when an attempt ends; stored with the call's row
    (`encode`), which the engine writes in the same commit as the output the attempt produced.
    """

    __slots__ = ("by_rate", "lost_attempts", "lost_seconds")

    def __init__(self) -> None:
        self.by_rate: dict[Rate, list] = {}  # rate -> [attempts, seconds]
        self.lost_attempts = 0
        self.lost_seconds = 0.0

    def charge(self, rate: Rate, seconds: float) -> None:
        """An attempt ran `seconds` on a container at `rate` and is the user's to pay."""
        row = self.by_rate.get(rate)
        if row is None:
            self.by_rate[rate] = [1, seconds]
        else:
            row[0] += 1
            row[1] += seconds

    def lose(self, seconds: float) -> None:
        """An attempt's container or worker went away under it: re-run for free, not charged."""
        self.lost_attempts += 1
        self.lost_seconds += seconds

    # ------------------------------------------------------------- wire and store
    def to_proto(self, message=None):
        """Fill (or make) a FunctionCallUsage with the capacity rows, totals and lost attempts."""
        usage = message if message is not None else client_pb2.FunctionCallUsage()
        most = None
        for rate, (attempts, seconds) in self.by_rate.items():
            usage.capacity.add(
                gpu_type=rate.gpu_type, gpu_count=rate.gpu_count, price_per_hour=rate.price_per_hour,
                attempts=attempts, seconds=seconds, gpu_seconds=seconds * rate.gpu_count,
                usd=seconds * rate.price_per_hour / 3600.0,
            )
            usage.attempts += attempts
            usage.seconds += seconds
            usage.gpu_seconds += seconds * rate.gpu_count
            usage.usd += seconds * rate.price_per_hour / 3600.0
            if most is None or seconds >= most[1]:
                most = (rate, seconds)
        if most is not None:
            usage.gpu_type, usage.gpu_count = most[0].gpu_type, most[0].gpu_count
        usage.lost_attempts = self.lost_attempts
        usage.lost_seconds = self.lost_seconds
        return usage

    def encode(self) -> bytes:
        """The stored form: a FunctionCallUsage holding only the rows and lost attempts."""
        stored = client_pb2.FunctionCallUsage(lost_attempts=self.lost_attempts, lost_seconds=self.lost_seconds)
        for rate, (attempts, seconds) in self.by_rate.items():
            stored.capacity.add(gpu_type=rate.gpu_type, gpu_count=rate.gpu_count, price_per_hour=rate.price_per_hour,
                                attempts=attempts, seconds=seconds)
        return stored.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> "CallUsage | None":
        """The usage stored by `encode` (None for b"": nothing ran yet)."""
        if not data:
            return None
        stored = client_pb2.FunctionCallUsage.FromString(bytes(data))
        usage = cls()
        for row in stored.capacity:
            usage.by_rate[Rate(row.gpu_type, row.gpu_count, row.price_per_hour)] = [row.attempts, row.seconds]
        usage.lost_attempts, usage.lost_seconds = stored.lost_attempts, stored.lost_seconds
        return usage
