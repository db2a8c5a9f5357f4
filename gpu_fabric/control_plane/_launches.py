"""Launched machines across a control-plane restart: their rows in the state store, and reconciling them on start.

Each launch is written to the store's `launches` table before its provider is asked (so a crash
mid-request leaves a trace), updated when its instance exists and when its worker registers, and
deleted when its machine is terminated. On start, `restore` compares the rows with what each
provider lists:

* listed and ours: adopted. Its worker re-registers (same worker id, or the launch's hostname) and
  keeps serving; a machine whose worker never registered resumes its launch timeout from the
  original launch time; one whose worker was registered gets `rejoin_timeout_s` to come back.
  Its instance charge goes on from when it began, so nothing is billed twice or lost.
* in the store, no longer listed: its charge is closed in the ledger at the last time the control
  plane was known to be running (it vanished while nobody watched; the cloud's bill is exact) and
  the row is dropped.
* listed (tagged with this fabric) and in no row: terminated, it would otherwise run unmanaged.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

from gpu_fabric.providers.base import Instance, Market, Offering

from ._billing import Charge
from ._store import StoredLaunch
from .scheduler import Candidate

log = logging.getLogger("gpu_fabric.control_plane.autoscaler")

ALIVE_KEY = "autoscaler:alive_at"  # meta: the last time this control plane was known to be running


def candidate_to_json(candidate: Candidate) -> str:
    """The scheduler's choice, as stored with the launch."""
    data = asdict(candidate)
    data["market"] = candidate.market.value
    return json.dumps(data, sort_keys=True)


def candidate_from_json(text: str) -> Candidate:
    data = json.loads(text)
    offering = dict(data.pop("offering"))
    offering["zones"] = tuple(offering.get("zones") or ())
    data["market"] = Market(data["market"])
    return Candidate(offering=Offering(**offering), **data)


def to_row(launch) -> StoredLaunch:
    """The store row of an autoscaler `Launch`."""
    instance = launch.instance
    return StoredLaunch(
        launch.launch_id, launch.provider, instance.instance_id if instance is not None else "",
        candidate_to_json(launch.candidate), launch.candidate.market.value, launch.started_at,
        "registered" if launch.worker_id or launch.prior_worker_id else ("booting" if instance is not None else "launching"),
        join_token_id(launch.token), launch.workspace, launch.app_id, launch.function_id,
        launch.worker_id or launch.prior_worker_id, launch.charged_from,
    )


def join_token_id(token: str) -> str:
    """"<launch_id>.<expires>" of a join token: enough to re-derive it, not a secret by itself."""
    parts = token.split(".")
    return ".".join(parts[1:3]) if len(parts) == 4 else ""


def instance_charge(launch) -> Charge:
    """The ledger charge of a launch's machine: its full price, to the workspace it was launched for."""
    c = launch.candidate
    return Charge("instance", launch.workspace, "", "", c.offering.cloud, c.offering.region, c.offering.instance_type,
                  c.market.value, c.gpu, c.offering.gpu_count, c.price, 0.0)


@dataclass
class Restored:
    """What `restore` did, for the log and for tests."""

    adopted: list[str] = field(default_factory=list)  # launch ids
    closed: list[str] = field(default_factory=list)  # launch ids whose machine was gone
    terminated: list[Instance] = field(default_factory=list)  # strays
    unmanaged: list[str] = field(default_factory=list)  # launch ids of providers not configured now


def restore(autoscaler, fleet) -> Restored:
    """Reconcile the store's launches with what the providers list (see the module docstring)."""
    from ._autoscaler import Launch

    store = autoscaler.store
    out = Restored()
    if store is None:
        return out
    now = autoscaler.clock()
    alive_at = float(store.get_meta(ALIVE_KEY) or 0.0) or now
    listed: dict[str, list[Instance] | None] = {}
    autoscaler.check_providers()  # configure() has just checked them
    for name, provider in autoscaler.providers.items():
        if not autoscaler.availability[name].enabled:
            listed[name] = None
            continue
        try:
            listed[name] = provider.list()
        except Exception as exc:  # noqa: BLE001 - an unreachable cloud must not stop the control plane
            log.warning("could not list %s instances to reconcile launches: %s", name, exc)
            listed[name] = None
    claimed: set[tuple[str, str]] = set()
    for row in store.launches():
        if row.provider not in autoscaler.providers:
            log.warning("launch %s (%s instance %s) is in the state but provider %s is not configured: its machine "
                        "may still be running; start with --provider %s to adopt or terminate it, or terminate it "
                        "in %s's console", row.launch_id, row.provider, row.instance_id or "?", row.provider,
                        row.provider, row.provider)
            out.unmanaged.append(row.launch_id)
            continue
        candidate = candidate_from_json(row.offering)
        instances = listed.get(row.provider)
        name = f"gf-{row.launch_id}"
        match = None
        if instances is not None:
            match = next((i for i in instances if (row.instance_id and i.instance_id == row.instance_id) or i.name == name), None)
        elif row.instance_id:  # cannot tell now: adopt on trust; its timeouts terminate it if no worker appears
            o = candidate.offering
            match = Instance(row.instance_id, row.provider, o.region, candidate.zone, o.instance_type, candidate.market, name)
        launch = Launch(row.launch_id, row.provider, candidate, row.function_id, row.app_id, candidate.slots,
                        row.launched_at, autoscaler.token_from_id(row.join_token_id), workspace=row.workspace,
                        charged_from=row.charged_from)
        if match is None:
            _close(autoscaler, fleet, launch, row, alive_at)
            out.closed.append(row.launch_id)
            continue
        claimed.add((row.provider, match.instance_id))
        launch.instance = match
        if row.worker_id:
            launch.state, launch.prior_worker_id = "rejoining", row.worker_id
            launch.rejoin_by = now + autoscaler.rejoin_timeout_s
        else:
            launch.state = "booting"  # its launch timeout runs on from `launched_at`
        if not launch.charged_from:
            launch.charged_from = now
        autoscaler.ledger.start("instance:" + launch.launch_id, instance_charge(launch), at=launch.charged_from)
        autoscaler.launches[launch.launch_id] = launch
        autoscaler.persist(launch)
        out.adopted.append(launch.launch_id)
        autoscaler.decide_for(fleet, launch, "adopt", f"{candidate.describe()} ({match.instance_id}) still runs after "
                              "the control plane restarted: adopted" + (", waiting for its worker to re-register"
                                                                        if row.worker_id else ", its launch timeout resumes"))
    for provider_name, instances in listed.items():
        for instance in instances or ():
            if (provider_name, instance.instance_id) in claimed:
                continue
            log.warning("terminating %s instance %s (%s): tagged with this fabric but no launch knows it",
                        provider_name, instance.instance_id, instance.name or "no name")
            try:
                autoscaler.providers[provider_name].terminate(instance)
            except Exception as exc:  # noqa: BLE001 - reported; the periodic sweep tries again
                log.error("could not terminate %s instance %s: %s", provider_name, instance.instance_id, exc)
            out.terminated.append(instance)
    store.set_meta(ALIVE_KEY, repr(now))
    if out.adopted or out.closed or out.terminated:
        log.warning("launches after the restart: %d adopted, %d gone (billing closed), %d stray instances terminated",
                    len(out.adopted), len(out.closed), len(out.terminated))
    return out


def _close(autoscaler, fleet, launch, row: StoredLaunch, alive_at: float) -> None:
    """The machine of `row` is gone: bill it up to the last time it was known, forget the launch."""
    store = autoscaler.store
    if row.charged_from:
        charge = instance_charge(launch)
        charge.started_at = row.charged_from
        ended = max(row.charged_from, alive_at)
        autoscaler.ledger.close(charge, ended)
        autoscaler.decide_for(fleet, launch, "closed", f"{launch.candidate.describe()} ({row.instance_id}) ended while "
                              f"the control plane was down; billed {ended - row.charged_from:.0f}s, up to when the "
                              "control plane last saw it")
    store.delete_launch(row.launch_id)
