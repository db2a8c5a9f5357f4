"""Runtime tests run in a scratch directory, as containers do (the loader writes sources there)."""
import pytest


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
