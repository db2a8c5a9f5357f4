"""`gpufabric serve` capacity options: budgets per fabric, workspace and app; the idle policy; keeping machines."""
from __future__ import annotations

import click
import pytest

from gpu_fabric.__main__ import _capacity_options


def test_budgets_idle_policy_and_keep_machines_reach_the_autoscaler_options():
    options = _capacity_options(("aws",), None, 100.0, ("demo=5",), 900.0, 300.0, None,
                                workspace_budgets=("ml-team=250", "web=12.5"), idle_policy="fixed", keep_machines=True)
    assert options["budget_usd"] == 100.0
    assert options["workspace_budgets"] == {"ml-team": 250.0, "web": 12.5}
    assert options["app_budgets"] == {"demo": 5.0}
    assert options["adaptive_idle"] is False and options["keep_machines"] is True and options["idle_window_s"] == 300.0


@pytest.mark.parametrize("item, message", [("ml-team", "expected WORKSPACE=USD"), ("=5", "expected WORKSPACE=USD"),
                                           ("ml=lots", "expected WORKSPACE=USD"), ("ml=-1", "cannot be negative")])
def test_a_bad_workspace_budget_says_what_is_expected(item, message):
    with pytest.raises(click.BadParameter, match=message):
        _capacity_options(("aws",), None, None, (), 900.0, 300.0, None, workspace_budgets=(item,))
