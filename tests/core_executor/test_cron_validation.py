"""Cron and Period are checked when the decorator runs, naming the field that is wrong."""
import pytest

import core_executor as fabric
from core_executor.exception import InvalidError


@pytest.mark.parametrize("expr, fragment", [
    ("61 * * * *", "minute field '61' is out of range"),
    ("* 25 * * *", "hour field"),
    ("0 9 * 13 *", "month field"),
    ("0 9 * * fri-mon", "runs backwards"),
    ("*/0 * * * *", "bad step"),
    ("0 9 * *", "five-field"),
    ("0 9 * * xyz", "not a number or a name"),
])
def test_bad_cron_names_the_field(expr, fragment):
    with pytest.raises(InvalidError, match=fragment):
        fabric.Cron(expr)


def test_good_cron_and_timezone():
    assert fabric.Cron("0 9 * * mon-fri", timezone="Europe/Paris").timezone == "Europe/Paris"
    with pytest.raises(InvalidError, match="unknown"):
        fabric.Cron("0 9 * * *", timezone="Mars/Olympus")


def test_period():
    assert fabric.Period(minutes=5).seconds == 300
    with pytest.raises(InvalidError):
        fabric.Period()
