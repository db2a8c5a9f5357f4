"""Decorator arguments: parsing, validation and the FunctionSpec they become."""
from __future__ import annotations

import json

import pytest

import core_executor as fabric
from core_executor._spec import build_options, parse_gpu
from core_executor.exception import InvalidError


@pytest.mark.parametrize(
    "gpu, expected",
    [
        (None, []),
        ("H100", [("H100", 1)]),
        ("h100:2", [("H100", 2)]),
        ("A100-80GB:4", [("A100-80GB", 4)]),
        (["H100", "A100"], [("H100", 1), ("A100", 1)]),
        (("L4:2", "any"), [("L4", 2), ("any", 1)]),
        ("ANY", [("any", 1)]),
    ],
)
def test_gpu_parsing(gpu, expected):
    assert parse_gpu(gpu) == expected


@pytest.mark.parametrize("gpu", ["", "H100:0", "H100:x", ":2", [], [1], 3, "H100:2:3", ["H100", None]])
def test_bad_gpu_says_what_to_use(gpu):
    with pytest.raises(InvalidError, match="gpu"):
        parse_gpu(gpu)


def _spec(**kwargs):
    app = fabric.App("spec-test")

    @app.function(**kwargs)
    def f(x):
        return x

    return f.spec


def test_spec_holds_every_argument():
    image = fabric.Image.debian_slim(python_version="3.11").pip_install("numpy", ["torch"]).apt_install("git")
    image = image.run_commands("echo hi").env({"A": "1"}).workdir("/app")
    spec = _spec(
        image=image, gpu=["H100:2", "A100"], cpu=2.5, memory=4096, timeout=600, startup_timeout=120,
        retries=fabric.Retries(max_retries=3, backoff_coefficient=3.0, initial_delay=2.0, max_delay=30.0),
        secrets=[fabric.Secret.from_name("hf"), fabric.Secret.from_dict({"TOKEN": "t", "SKIP": None})],
        volumes={"/data": fabric.Volume.from_name("data", create_if_missing=True)},
        min_containers=1, max_containers=4, buffer_containers=1, scaledown_window=90,
        schedule=fabric.Cron("0 9 * * 1-5", timezone="Europe/Paris"), region=["us-east-1"], cloud="AWS",
        nonpreemptible=True, env={"B": "2"},
    )  # fmt: skip
    assert spec.name == "f"
    assert [(g.type, g.count) for g in spec.gpus] == [("H100", 2), ("A100", 1)]
    assert (spec.cpu, spec.memory_mb, spec.timeout_s, spec.startup_timeout_s) == (2.5, 4096, 600, 120)
    assert (spec.retries.max_retries, spec.retries.backoff_coefficient) == (3, 3.0)
    assert (spec.retries.initial_delay_s, spec.retries.max_delay_s) == (2.0, 30.0)
    assert list(spec.secret_names) == ["hf"]
    assert dict(spec.env) == {"A": "1", "B": "2"}  # Secret.from_dict values go to the fabric encrypted
    assert [(v.mount_path, v.volume_name, v.read_only) for v in spec.volumes] == [("/data", "data", False)]
    assert (spec.min_containers, spec.max_containers, spec.buffer_containers) == (1, 4, 1)
    assert spec.scaledown_window_s == 90
    assert (spec.schedule.cron, spec.schedule.timezone) == ("0 9 * * 1-5", "Europe/Paris")
    assert list(spec.regions) == ["us-east-1"] and list(spec.clouds) == ["aws"]
    assert spec.nonpreemptible and spec.python_version == "3.11"
    recipe = json.loads(spec.image.recipe_json)
    assert recipe["base"] == {"kind": "debian_slim", "python_version": "3.11"}
    assert [s["op"] for s in recipe["steps"]] == ["pip_install", "apt_install", "run_commands", "env", "workdir"]
    assert recipe["steps"][0]["packages"] == ["numpy", "torch"]


def test_int_retries_mean_fixed_delay_and_period_schedule():
    spec = _spec(retries=2, schedule=fabric.Period(minutes=5))
    assert (spec.retries.max_retries, spec.retries.backoff_coefficient, spec.retries.initial_delay_s) == (2, 1.0, 1.0)
    assert spec.schedule.period_s == 300


def test_defaults_leave_the_spec_empty():
    spec = _spec()
    assert not spec.gpus and spec.cpu == 0 and not spec.HasField("retries") and not spec.HasField("schedule")
    assert not spec.is_generator and not spec.is_async


def test_generator_and_async_are_detected():
    app = fabric.App("kinds")

    @app.function()
    def gen():
        yield 1

    @app.function()
    async def coro():
        return 1

    assert gen.spec.is_generator and not gen.spec.is_async
    assert coro.spec.is_async and not coro.spec.is_generator


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cpu": 0}, "cpu must be > 0"),
        ({"cpu": "two"}, "cpu must be a number"),
        ({"memory": 1.5}, "memory"),
        ({"timeout": -1}, "timeout"),
        ({"retries": "3"}, "retries must be an int or fabric.Retries"),
        ({"retries": -1}, "max_retries"),
        ({"secrets": ["hf-token"]}, "Secret.from_name"),
        ({"volumes": {"data": fabric.Volume.from_name("d")}}, "absolute path"),
        ({"volumes": {"/": fabric.Volume.from_name("d")}}, "other than '/'"),
        ({"volumes": {"/d": "d"}}, "must be a fabric.Volume"),
        ({"min_containers": 3, "max_containers": 2}, "min_containers"),
        ({"max_containers": 0}, "max_containers"),
        ({"schedule": "0 * * * *"}, "fabric.Cron"),
        ({"cloud": "azure"}, "unknown"),
        ({"image": "python:3.11"}, "fabric.Image"),
        ({"scaledown_window": 0}, "scaledown_window"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, message):
    with pytest.raises(InvalidError, match=message):
        build_options(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: fabric.Retries(max_retries=1, backoff_coefficient=0.5),
        lambda: fabric.Retries(max_retries=1, initial_delay=10, max_delay=5),
        lambda: fabric.Retries(max_retries=True),
        lambda: fabric.Cron("* * *"),
        lambda: fabric.Period(),
        lambda: fabric.Period(seconds=-1),
        lambda: fabric.Image.debian_slim(python_version="3"),
        lambda: fabric.Image.debian_slim().workdir("app"),
        lambda: fabric.Image.debian_slim().env({"A": 1}),
        lambda: fabric.Volume.from_name("bad name"),
        lambda: fabric.Secret.from_dict({"A": 1}),
    ],
)
def test_bad_resource_holders(make):
    with pytest.raises(InvalidError):
        make()


def test_resource_holders_compare_by_value():
    assert fabric.Retries(2) == fabric.Retries(2) and hash(fabric.Retries(2)) == hash(fabric.Retries(2))
    assert fabric.Image.debian_slim().pip_install("a") == fabric.Image.debian_slim().pip_install("a")
    base = fabric.Image.debian_slim()
    assert base.pip_install("x") is not base and base.recipe()["steps"] == []
    assert fabric.Secret.from_dict({"A": "1"}) == fabric.Secret.from_dict({"A": "1"})
    assert fabric.Period(hours=1) == fabric.Period(seconds=3600)


def test_app_defaults_apply_to_functions():
    image = fabric.Image.debian_slim().pip_install("numpy")
    app = fabric.App("defaults", image=image, secrets=[fabric.Secret.from_name("s")])

    @app.function(secrets=[fabric.Secret.from_name("t")])
    def f():
        pass

    assert list(f.spec.secret_names) == ["s", "t"] and "numpy" in f.spec.image.recipe_json


def test_decorator_forms_and_names():
    app = fabric.App("forms")

    @app.function
    def bare(x):
        return x

    @app.function(name="custom")
    def named(x):
        return x

    assert set(app.registered_functions) == {"bare", "custom"}
    assert bare(2) == 2 and bare.__name__ == "bare"
    with pytest.raises(InvalidError, match="only once"):
        app.function()(bare)
    with pytest.raises(InvalidError):
        fabric.App("")
