"""The local provider: a worker agent process per launch, named after the launch, at the configured price."""
from __future__ import annotations

import pytest

from gpu_fabric.providers import LaunchError, LaunchRequest, Market, startup_script
from gpu_fabric.providers.local import LocalProvider


class _Proc:
    def __init__(self, args, **kwargs):
        self.args, self.kwargs, self.pid, self.signals, self.code = args, kwargs, 4242, [], None

    def poll(self):
        return self.code

    def terminate(self):
        self.signals.append("TERM")
        self.code = -15

    def wait(self, timeout=None):
        return self.code

    def kill(self):
        self.signals.append("KILL")


def test_a_local_launch_runs_an_agent_named_after_the_launch_at_its_price():
    procs = []
    provider = LocalProvider(simulate_gpus="L4:1", price_per_hour=2.5, popen=lambda a, **k: procs.append(_Proc(a, **k)) or procs[-1])
    (offering,) = provider.offerings()
    assert (offering.gpu, offering.gpu_count, offering.on_demand) == ("L4", 1, 2.5)
    script = startup_script(url="grpc://127.0.0.1:7373", join_token="gfj1.abc.1.sig", hostname="gf-abc")
    instance = provider.launch(LaunchRequest(offering, "local", Market.ON_DEMAND, "gf-abc", script))
    args = procs[0].args
    assert args[args.index("--hostname") + 1] == "gf-abc" and args[args.index("--token") + 1] == "gfj1.abc.1.sig"
    assert args[args.index("--simulate-gpus") + 1] == "L4:1"
    with pytest.raises(LaunchError, match="max_workers=1"):
        provider.launch(LaunchRequest(offering, "local", Market.ON_DEMAND, "gf-def", script))
    assert provider.list() == [instance]
    provider.terminate(instance)
    assert procs[0].signals == ["TERM"] and provider.list() == []


def test_a_negative_local_price_is_refused():
    with pytest.raises(ValueError, match="price_per_hour"):
        LocalProvider(price_per_hour=-1)
