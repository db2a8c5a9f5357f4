"""The SDK's secrets: from_dict values never in a spec or a repr, registration, the `secret` CLI."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import core_executor as fabric
from core_executor import exception
from core_executor.cli import main as cli
from gpu_fabric.proto import objects_pb2

from .test_objects import plane  # noqa: F401 - the fixture

VALUE = "hunter2-do-not-show"


def _secret_names(plane, app_name):  # noqa: F811
    def read():
        app = next(a for a in plane.engine.apps.values() if a.name == app_name)
        return {plane.engine.functions[fid].name: list(plane.engine.functions[fid].spec.secret_names)
                for fid in app.function_ids.values()}

    return plane.run_in_loop(read)


def test_from_dict_values_stay_out_of_the_spec_and_the_repr():
    secret = fabric.Secret.from_dict({"TOKEN": VALUE, "SKIP": None})
    assert VALUE not in repr(secret) and "TOKEN" in repr(secret)
    app = fabric.App("s")

    @app.function(secrets=[secret], env={"PLAIN": "1"}, serialized=True)
    def f():
        return 1

    assert VALUE not in str(f.spec) and dict(f.spec.env) == {"PLAIN": "1"}
    assert list(f.spec.secret_names) == []


def test_from_dict_is_registered_as_the_apps_secret_in_order(plane):  # noqa: F811
    plane.run_in_loop(lambda: plane.plane.objects.secrets.create("named", {"A": "1"}))
    app = fabric.App("secrets-order")

    @app.function(secrets=[fabric.Secret.from_dict({"A": VALUE}), fabric.Secret.from_name("named")], serialized=True)
    def f():
        return 1

    with app.run(show_logs=False):
        names = _secret_names(plane, "secrets-order")["f"]
        assert len(names) == 2 and names[0].startswith("_anon-") and names[1] == "named"
        assert VALUE not in str(f.spec)


def test_a_missing_secret_fails_the_run_with_the_create_command(plane):  # noqa: F811
    app = fabric.App("missing-secret")

    @app.function(secrets=[fabric.Secret.from_name("nope")], serialized=True)
    def f():
        return 1

    with pytest.raises(exception.NotFoundError, match="gpufabric secret create nope KEY=VALUE"):
        with app.run(show_logs=False):
            pass


def test_required_keys_are_checked_at_function_creation(plane):  # noqa: F811
    plane.run_in_loop(lambda: plane.plane.objects.secrets.create("partial", {"A": "1"}))
    app = fabric.App("required")

    @app.function(secrets=[fabric.Secret.from_name("partial", required_keys=["A", "B"])], serialized=True)
    def f():
        return 1

    with pytest.raises(exception.InvalidError, match="lacks the required keys B"):
        with app.run(show_logs=False):
            pass


def test_secret_cli_create_list_delete_never_prints_values(plane, tmp_path):  # noqa: F811
    runner = CliRunner()
    result = runner.invoke(cli, ["secret", "create", "hf", f"HF_TOKEN={VALUE}", "EMPTY="])
    assert result.exit_code == 0, result.output
    assert "EMPTY, HF_TOKEN" in result.output and VALUE not in result.output
    again = runner.invoke(cli, ["secret", "create", "hf", "HF_TOKEN=x"])
    assert again.exit_code == 1 and "--force" in again.output
    dotenv = tmp_path / ".env"
    dotenv.write_text(f'# comment\nexport HF_TOKEN="{VALUE}"\nOTHER=2\n')
    forced = runner.invoke(cli, ["secret", "create", "hf", "--from-dotenv", str(dotenv), "--force"])
    assert forced.exit_code == 0, forced.output
    listed = runner.invoke(cli, ["secret", "list"])
    assert listed.exit_code == 0 and "hf" in listed.output and "HF_TOKEN,OTHER" in listed.output
    assert VALUE not in listed.output
    bad = runner.invoke(cli, ["secret", "create", "x", "NOEQUALS"])
    assert bad.exit_code != 0 and "KEY=VALUE" in bad.output
    assert runner.invoke(cli, ["secret", "delete", "hf"]).exit_code == 0
    missing = runner.invoke(cli, ["secret", "delete", "hf"])
    assert missing.exit_code == 1 and "no secret named 'hf'" in missing.output
    stored = plane.run_in_loop(lambda: plane.plane.objects.secrets.list(include_anonymous=True))
    assert stored == []
    assert objects_pb2.SecretInfo.DESCRIPTOR.fields_by_name.keys() == ["name", "keys", "created_at", "updated_at", "app_id"]


def test_the_runtime_sets_secret_env_but_never_the_fabrics_own_variables():
    from core_executor._runtime._env import apply_secret_env
    from gpu_fabric.proto import worker_pb2

    hello = worker_pb2.ContainerHelloResponse(secret_env={
        "API_KEY": VALUE, "GPUFABRIC_URL": "grpc://elsewhere:1", "CUDA_VISIBLE_DEVICES": "0,1,2",
    })
    environ = {"GPUFABRIC_URL": "grpc://here:1", "CUDA_VISIBLE_DEVICES": "3"}
    apply_secret_env(hello, environ)
    assert environ == {"API_KEY": VALUE, "GPUFABRIC_URL": "grpc://here:1", "CUDA_VISIBLE_DEVICES": "3"}
