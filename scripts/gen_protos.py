"""Regenerates the committed gRPC stubs in gpu_fabric/proto from the .proto files.

Run `python scripts/gen_protos.py` after editing a .proto; `--check` exits 1 when the committed
stubs differ from what the .proto files generate (the test suite runs that check). The generators'
own version stamps are left out of the comparison: a newer grpcio-tools or protoc release that
writes the same code is not a stale stub.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "gpu_fabric" / "proto"


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "gpu_fabric" / "proto").glob("*_pb2*"))


# What the generators stamp with their own version (the minimum runtime the stubs then ask for).
_VERSION_STAMPS = re.compile(
    r"^GRPC_GENERATED_VERSION = '[^']*'$"
    r"|^# Protobuf Python Version: .*$"
    r"|^(_runtime_version\.ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.\w+,)\s*\d+,\s*\d+,\s*\d+,\s*'[^']*',",
    re.MULTILINE,
)


def same_code(generated: pathlib.Path, committed: pathlib.Path) -> bool:
    """Whether two stubs hold the same code, whatever generator versions stamped them."""
    def code(path: pathlib.Path) -> str:
        return _VERSION_STAMPS.sub(lambda m: m.group(1) or "", path.read_text())

    return committed.exists() and code(generated) == code(committed)


def main() -> int:
    check = "--check" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(pathlib.Path(tmp))
        stale = []
        for path in generated:
            target = PROTO_DIR / path.name
            if check:
                if not same_code(path, target):
                    stale.append(path.name)
            else:
                shutil.copyfile(path, target)
        if check and stale:
            print("stale generated stubs (run `python scripts/gen_protos.py`):", ", ".join(stale))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
