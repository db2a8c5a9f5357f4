"""Budgets on launching: for the whole fabric, per workspace and per app, and placement while one is reached."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ._tokens import DEFAULT_WORKSPACE

__all__ = ["BudgetGuard", "Budgets", "workspace_of"]


@dataclass
class Budgets:
    """USD limits on launching: `total` over every machine the fabric launched (`--budget`);
    `workspaces` per workspace over its containers plus the idle rest of the machines launched for
    it (`--workspace-budget`); `apps` per app name over its containers, in each workspace on its own
    (`--app-budget`: the same name in two workspaces is two apps with a budget each)."""

    total: float | None = None
    workspaces: dict = field(default_factory=dict)
    apps: dict = field(default_factory=dict)


def workspace_of(fleet, app_id: str) -> str:
    """The workspace of app `app_id` (the default one for an app the fleet does not know)."""
    app = fleet.apps.get(app_id)
    return getattr(app, "workspace", DEFAULT_WORKSPACE) if app is not None else DEFAULT_WORKSPACE


class BudgetGuard:
    """Says whether a function may have machines launched for it, once per app in its log when not,
    and keeps a function at its workspace's or app's budget off machines launched for others."""

    def __init__(self, budgets: Budgets, ledger, scheduler, clock: Callable[[], float]):
        self.budgets, self.ledger, self.scheduler, self.clock = budgets, ledger, scheduler, clock
        self._said: set[tuple] = set()  # (scope, what, app_id): the event is in the app's log
        self._over_at = -math.inf
        self._over: tuple[set, set] = (set(), set())  # workspaces, (workspace, app name) at their budget (refreshed each second)

    def stop(self, fleet, fn, decide: Callable) -> bool:
        """True when a budget over `fn` is reached; the first time for its app and that budget,
        `decide(fleet, fn, "budget", text)` says so."""
        app = fleet.apps.get(fn.app_id)
        app_name = app.name if app is not None else fn.app_id
        workspace = workspace_of(fleet, fn.app_id)
        limits = []
        if self.budgets.total is not None:
            limits.append(("fabric", "--budget", "all machines the fabric launched", float(self.budgets.total),
                           lambda: self.ledger.spend()))
        if workspace in self.budgets.workspaces:
            limits.append(("workspace", f"--workspace-budget {workspace}=USD", f"workspace {workspace!r}",
                           float(self.budgets.workspaces[workspace]), lambda: self.ledger.spend(workspace=workspace)))
        if app_name in self.budgets.apps:
            limits.append(("app", f"--app-budget {app_name}=USD", f"app {app_name!r} of workspace {workspace!r}",
                           float(self.budgets.apps[app_name]), lambda: self.ledger.spend(app=app_name, workspace=workspace)))
        for scope, option, what, limit, spend in limits:
            spent = spend()
            if spent >= limit:
                key = (scope, what, fn.app_id)
                if key not in self._said:
                    self._said.add(key)
                    decide(fleet, fn, "budget", f"the budget of {what} is reached (${spent:.2f} of ${limit:.2f}): "
                           f"no more machines are launched for it; queued inputs wait, running ones go on "
                           f"(raise {option} and restart the control plane to go on)")
                return True
        self._said = {k for k in self._said if k[2] != fn.app_id}
        return False

    def restriction(self, fleet, fn) -> Callable | None:
        """For a function whose workspace or app is at its budget: which launched machines it may
        still use (those launched for that workspace or app: its inputs wait rather than take
        machines others pay for). None when it may use any."""
        now = self.clock()
        if now - self._over_at >= 1.0:
            self._over_at = now
            self._over = ({w for w, usd in self.budgets.workspaces.items() if self.ledger.spend(workspace=w) >= float(usd)},
                          {(w, a) for a, usd in self.budgets.apps.items() for w in self._workspaces(fleet)
                           if self.ledger.spend(app=a, workspace=w) >= float(usd)})
        workspaces, apps = self._over
        if not workspaces and not apps:
            return None
        app = fleet.apps.get(fn.app_id)
        workspace = workspace_of(fleet, fn.app_id)
        if app is not None and (workspace, app.name) in apps:
            return lambda launch: launch.app_id == fn.app_id
        if workspace in workspaces:
            return lambda launch: launch.workspace == workspace
        return None

    @staticmethod
    def _workspaces(fleet) -> set:
        return {workspace_of(fleet, app_id) for app_id in fleet.apps} or {DEFAULT_WORKSPACE}

    def place(self, fn, allowed: Callable | None, launches: Iterable):
        """The scheduler's placement for `fn`, leaving out the registered `launches` that `allowed`
        rejects (closed for this one placement: placement runs on the event loop, nothing interleaves)."""
        if allowed is None:
            return self.scheduler.place(fn.spec)
        closed = []
        workers = self.scheduler.index.workers
        for launch in launches:
            capacity = workers.get(launch.worker_id) if launch.worker_id else None
            if capacity is not None and capacity.accepting and not allowed(launch):
                capacity.accepting = False
                closed.append(capacity)
        try:
            placement, reason = self.scheduler.place(fn.spec)
        finally:
            for capacity in closed:
                capacity.accepting = True
        if placement is None and closed:
            reason += f" (at its budget, {fn.name} runs only on machines launched for it)"
        return placement, reason
