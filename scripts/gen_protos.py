"""Regenerates the committed gRPC stubs in gpu_fabric/proto from the .proto files.

Run `python scripts/gen_protos.py` after editing a .proto; `--check` exits 1 when the committed
stubs differ from what the .proto files generate (the test suite runs that check).
"""
from __future__ import annotations

import filecmp
import pathlib
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


def main() -> int:
    check = "--check" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(pathlib.Path(tmp))
        stale = []
        for path in generated:
            target = PROTO_DIR / path.name
            if check:
                if not target.exists() or not filecmp.cmp(path, target, shallow=False):
                    stale.append(path.name)
            else:
                shutil.copyfile(path, target)
        if check and stale:
            print("stale generated stubs (run `python scripts/gen_protos.py`):", ", ".join(stale))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
