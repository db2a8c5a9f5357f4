"""scripts/gen_protos.py --check: stale stubs are caught, a newer generator's version stamp is not."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
gen_protos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_protos)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, pathlib.Path]:
    return {p.name: p for p in gen_protos.generate(tmp_path_factory.mktemp("protos"))}


def test_committed_stubs_match_the_protos(generated):
    stale = [name for name, path in generated.items() if not gen_protos.same_code(path, ROOT / "gpu_fabric" / "proto" / name)]
    assert not stale, "run `python scripts/gen_protos.py`"


def test_only_version_stamps_are_ignored(generated, tmp_path):
    grpc_stub, message_stub = generated["client_pb2_grpc.py"], generated["client_pb2.py"]
    restamped = tmp_path / grpc_stub.name
    restamped.write_text(grpc_stub.read_text().replace("GRPC_GENERATED_VERSION = '", "GRPC_GENERATED_VERSION = '9"))
    assert gen_protos.same_code(grpc_stub, restamped)

    text = message_stub.read_text()
    older = tmp_path / message_stub.name
    runtime_call = "_runtime_version.Domain.PUBLIC,\n    "
    assert runtime_call in text
    older.write_text(text.replace("# Protobuf Python Version: ", "# Protobuf Python Version: 1")
                     .replace(runtime_call, runtime_call + "1"))
    assert gen_protos.same_code(message_stub, older)

    edited = tmp_path / "edited.py"
    edited.write_text(text.replace("FunctionCallGetUsage", "FunctionCallGetUsageX", 1))
    assert "FunctionCallGetUsage" in text and not gen_protos.same_code(message_stub, edited)
    assert not gen_protos.same_code(message_stub, tmp_path / "missing.py")
