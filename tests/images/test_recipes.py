"""Image recipes: the SDK's builder methods and how a worker turns them into keyed build steps."""
from __future__ import annotations

import json
import sys

import pytest

import core_executor as fabric
from core_executor.exception import InvalidError
from fs_lazy import BuildError
from fs_lazy._builder import step_keys
from gpu_fabric.worker._images import _Recipe


def _helper(value: int) -> None:
    with open("/built", "w") as f:
        f.write(str(value))


def test_builder_methods_record_steps(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "f.txt").write_text("f")
    image = (fabric.Image.debian_slim(python_version="3.11")
             .apt_install("git").pip_install("six", pre=True).uv_pip_install("attrs")
             .run_commands("echo hi").env({"A": "1"}).workdir("/app")
             .add_local_dir(tmp_path / "d", "/srv/d").add_local_file(str(tmp_path / "f.txt"), "/srv/")
             .add_local_python_source("json").run_function(_helper, args=(3,)))
    steps = image.recipe()["steps"]
    assert [s["op"] for s in steps] == ["apt_install", "pip_install", "uv_pip_install", "run_commands", "env",
                                        "workdir", "add_local_dir", "add_local_file", "add_local_python_source",
                                        "run_function"]
    assert steps[7]["remote_path"] == "/srv/f.txt"
    assert len(steps[6]["content_sha256"]) == 64
    assert image.env_vars == {"A": "1"}
    assert fabric.Image.debian_slim().python_version == "%d.%d" % sys.version_info[:2]


def test_local_paths_that_do_not_exist_fail_at_definition(tmp_path):
    with pytest.raises(InvalidError, match="does not exist"):
        fabric.Image.debian_slim().add_local_dir(tmp_path / "nope", "/x")
    with pytest.raises(InvalidError, match="does not exist"):
        fabric.Image.debian_slim().add_local_file(tmp_path / "nope.txt", "/x")
    with pytest.raises(InvalidError, match="absolute"):
        fabric.Image.debian_slim().add_local_dir(tmp_path, "relative")
    with pytest.raises(InvalidError, match="not a local Python source"):
        fabric.Image.debian_slim().add_local_python_source("sys")


def test_changed_local_file_changes_only_its_step_and_later(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("one")

    def keys():
        image = fabric.Image.debian_slim(python_version="3.11").pip_install("six").add_local_dir(
            tmp_path / "d", "/d").run_commands("true")
        recipe = _Recipe(json.loads(image.recipe_json()))
        return step_keys(recipe.base_key, recipe.steps)

    before = keys()
    assert keys() == before
    (tmp_path / "d" / "a.txt").write_text("two")
    after = keys()
    assert after[:2] == before[:2] and after[2] != before[2] and after[3] != before[3]


def test_force_build_marks_the_step(monkeypatch):
    image = fabric.Image.debian_slim(python_version="3.11").pip_install("six", force_build=True)
    recipe = _Recipe(json.loads(image.recipe_json()))
    assert recipe.steps[0].force
    monkeypatch.setenv("GPUFABRIC_FORCE_BUILD", "1")
    assert fabric.Image.debian_slim().recipe()["base"]["force_build"] is True


def test_worker_refuses_what_it_cannot_build():
    with pytest.raises(BuildError, match="no Debian release ships Python 3.10"):
        _Recipe({"base": {"kind": "debian_slim", "python_version": "3.10"}, "steps": []})
    with pytest.raises(BuildError, match="cannot be built here"):
        _Recipe({"base": {"kind": "registry", "tag": "x"}, "steps": []})
    with pytest.raises(BuildError, match="unknown image step"):
        _Recipe({"base": {"kind": "debian_slim", "python_version": "3.11"}, "steps": [{"op": "teleport"}]})


def test_inside_a_container_local_paths_are_not_checked(monkeypatch):
    monkeypatch.setenv("GPUFABRIC_IS_CONTAINER", "1")
    image = fabric.Image.debian_slim().add_local_dir("/does/not/exist/here", "/x")
    assert image.recipe()["steps"][0]["content_sha256"] == ""


def test_run_function_key_ignores_the_pickled_bytes():
    image = fabric.Image.debian_slim(python_version="3.11").run_function(_helper, args=(1,))
    step = image.recipe()["steps"][0]
    assert step["pickled_b64"] and len(step["source_sha256"]) == 64
    recipe = _Recipe(json.loads(image.recipe_json()))
    assert "pickled_b64" not in recipe.steps[0].key_data
