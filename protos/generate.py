"""Generate the Python stubs of the contract into facesearch/v1/.

Run from anywhere: ``python protos/generate.py``. Uses the pinned grpcio-tools (see
pyproject.toml) so the generated code matches the protobuf runtime that tritonclient allows.
``--out DIR`` writes elsewhere; the stale-stubs test uses it to compare.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def generate(out: Path) -> list[Path]:
    """Compile every .proto under protos/facesearch into ``out``; return the written files."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    package = out / "facesearch" / "v1"
    (package / "__init__.py").write_text('"""Generated protobuf and gRPC stubs (do not edit)."""\n')
    return sorted(package.glob("*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO_ROOT)
    out = parser.parse_args().out
    written = generate(out)
    print(f"wrote {len(written)} files into {out / 'facesearch' / 'v1'}", file=sys.stderr)


if __name__ == "__main__":
    main()
