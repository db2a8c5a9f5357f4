"""What every price refresh shares: its error, the record of one price change, and the catalog file format."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["PricingError", "PriceChange", "RefreshResult", "dump_catalog", "mark_priced", "set_price"]


class PricingError(Exception):
    """Raised when a cloud's pricing API cannot be read (no credentials, refused, unreachable, reshaped).

    The message starts with the cloud's name and says what to do; the refresh command prints it and
    leaves the catalog file as it was."""


@dataclass(frozen=True)
class PriceChange:
    """One hourly price of one offering that a refresh changed (`new` None: no longer sold that way)."""

    cloud: str
    region: str
    instance_type: str
    field: str  # "on_demand" or "spot"
    old: float | None
    new: float | None

    @property
    def relative(self) -> float | None:
        """(new - old) / old, None where either side is missing or old is zero."""
        if not self.old or self.new is None:
            return None
        return (self.new - self.old) / self.old

    def is_large(self, threshold: float) -> bool:
        """A move of more than `threshold` (0.5 = 50%) either way, or a price appearing or vanishing."""
        rel = self.relative
        return rel is None or abs(rel) > threshold

    def __str__(self) -> str:
        def fmt(v):
            return "none" if v is None else f"{v:g}"
        rel = self.relative
        pct = f" ({rel:+.0%})" if rel is not None else ""
        return f"{self.cloud} {self.region} {self.instance_type} {self.field}: {fmt(self.old)} -> {fmt(self.new)}{pct}"


@dataclass
class RefreshResult:
    """What one cloud's refresh did: prices it changed, offerings it checked, and those it could not price."""

    cloud: str
    source: str  # the API it read, in words
    changes: list[PriceChange] = field(default_factory=list)
    checked: int = 0
    unpriced: list[str] = field(default_factory=list)  # "region instance_type: why"
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The name offerings priced by this refresh give as their "source" (see catalog.json's verification)."""
        return f"{self.cloud}-pricing-api"


def set_price(result: RefreshResult, offering: dict, field_name: str, new: float | None) -> None:
    """Set `offering[field_name]` to `new`, recording the change in `result` when the value moves."""
    old = offering.get(field_name)
    if new is not None:
        new = round(float(new), 5)
    if old != new:
        offering[field_name] = new
        result.changes.append(PriceChange(result.cloud, offering["region"], offering["instance_type"],
                                          field_name, old, new))


def mark_priced(result: RefreshResult, offering: dict) -> None:
    """Record on `offering` that its on-demand price now comes from the API `result` read."""
    offering["verified"] = True
    offering["source"] = result.key
    offering.pop("note", None)  # a note explained the figure that was just replaced


_EXPANDED = ("sources", "verification", "refreshed")  # metadata read by people: one item per line


def dump_catalog(data: dict) -> str:
    """catalog.json's text: one line per top-level key and per offering, so diffs stay readable."""
    keys = list(data)
    lines = ["{"]
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = data[key]
        if key == "offerings":
            lines.append(' "offerings": [')
            lines += [f"  {json.dumps(o)}{',' if j < len(value) - 1 else ''}" for j, o in enumerate(value)]
            lines.append(f" ]{comma}")
        elif key in _EXPANDED:
            body = json.dumps(value, indent=1).replace("\n", "\n ")
            lines.append(f" {json.dumps(key)}: {body}{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"
