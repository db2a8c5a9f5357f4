"""The `gpufabric` CLI: target parsing, entrypoint options, run against a fake fabric, passthroughs."""
from __future__ import annotations

import itertools
import sys
import textwrap

import pytest
from click.testing import CliRunner

from core_executor import cli

_counter = itertools.count()

SOURCE = textwrap.dedent("""
    import core_executor as fabric

    app = fabric.App("cli-test")

    @app.function()
    def square(x: int) -> int:
        return x * x

    @app.function()
    def greet(name: str, excited: bool = False) -> str:
        return f"hello {name}" + ("!" if excited else "")

    @app.local_entrypoint()
    def main(n: int = 3, label: str = "sq"):
        print(label, square.remote(n))

    if __name__ == "__main__":
        raise SystemExit("must not run under gpufabric run")
""")


@pytest.fixture
def app_file(tmp_path):
    name = f"cli_app_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE)
    yield path
    sys.modules.pop(name, None)


def test_split_target():
    assert cli.split_target("a/b.py::fn") == ("a/b.py", "fn")
    assert cli.split_target("b.py") == ("b.py", "")
    assert cli.split_target("b.py::app.fn") == ("b.py", "app.fn")


def test_entrypoint_options_follow_annotations():
    def f(n: int, ratio: float = 0.5, name: str = "x", dry_run: bool = False):
        return None

    assert cli.parse_entry_args(f, ["--n", "3", "--ratio", "2", "--dry-run", "--name", "y"], "p") == {
        "n": 3, "ratio": 2.0, "name": "y", "dry_run": True,
    }  # fmt: skip
    assert cli.parse_entry_args(f, ["--n", "1", "--dry_run"], "p")["dry_run"] is True
    with pytest.raises(Exception, match="n"):
        cli.parse_entry_args(f, [], "p")
    with pytest.raises(Exception):
        cli.parse_entry_args(f, ["--n", "notanint"], "p")


def test_find_runnable(app_file):
    module = cli.import_target(str(app_file))
    assert module.__name__ == app_file.stem
    _, runnable = cli.find_runnable(module)
    assert runnable.name == "main"
    assert cli.find_runnable(module, "square")[1] is module.square
    assert cli.find_runnable(module, "app.greet")[1] is module.greet
    with pytest.raises(Exception, match="no function or local entrypoint 'nope'"):
        cli.find_runnable(module, "nope")


def test_run_entrypoint_with_options(fake_server, app_file):
    result = CliRunner().invoke(cli.main, ["run", str(app_file), "--n", "5", "--label", "five"])
    assert result.exit_code == 0, result.output
    assert "five 25" in result.output
    assert "AppStop" in fake_server.fabric.names()


def test_run_file_function_calls_it_remotely(fake_server, app_file):
    result = CliRunner().invoke(cli.main, ["run", f"{app_file}::greet", "--name", "ada", "--excited"])
    assert result.exit_code == 0, result.output
    assert "hello ada!" in result.output
    create = [r for r in fake_server.fabric.requests if r[0] == "FunctionCreate"][0][1]
    assert create.definition.module_name == app_file.stem  # imported under its stem, KIND_FILE
    assert create.definition.kind == 1


def test_run_reports_missing_file():
    result = CliRunner().invoke(cli.main, ["run", "does_not_exist.py"])
    assert result.exit_code != 0 and "no such file" in result.output


def test_app_commands_need_a_configured_fabric(monkeypatch):
    monkeypatch.delenv("GPUFABRIC_URL", raising=False)
    result = CliRunner().invoke(cli.main, ["app", "list"])
    assert result.exit_code == 1
    assert "set GPUFABRIC_URL and GPUFABRIC_TOKEN (printed by `gpufabric serve`)" in result.output


def test_deploy_then_app_list_stop_logs(fake_server, app_file):
    runner = CliRunner()
    result = runner.invoke(cli.main, ["deploy", str(app_file)])
    assert result.exit_code == 0, result.output
    assert "deployed app cli-test" in result.output
    app_id = next(iter(fake_server.fabric.apps))
    fake_server.fabric.add_log(app_id, "hello from square", "square")
    listing = runner.invoke(cli.main, ["app", "list"])
    assert app_id in listing.output and "deployed" in listing.output
    logs = runner.invoke(cli.main, ["app", "logs", "cli-test"])
    assert "[square] hello from square" in logs.output
    stop = runner.invoke(cli.main, ["app", "stop", "cli-test"])
    assert stop.exit_code == 0 and f"stopped app cli-test ({app_id})" in stop.output
    missing = runner.invoke(cli.main, ["app", "stop", "nope"])
    assert missing.exit_code == 1 and "no app with id or name 'nope'" in missing.output


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_exec_the_fabric(monkeypatch, command):
    calls = []
    monkeypatch.setattr(cli, "_exec", lambda exe, argv: calls.append(argv))
    result = CliRunner().invoke(cli.main, [command, "--port", "7000", "--help"])
    assert result.exit_code == 0, result.output
    assert calls == [[sys.executable, "-m", "gpu_fabric", command, "--port", "7000", "--help"]]
