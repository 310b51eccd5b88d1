"""Generate the Python stubs of the contract into protos/facesearch_contract/v1/.

Run from anywhere: ``python protos/generate.py``. Uses the pinned grpcio-tools (see
protos/pyproject.toml) so the generated code matches the protobuf runtime that tritonclient
allows. ``--out DIR`` writes ``DIR/facesearch_contract/v1`` instead; the stale-stubs test uses it
to compare.

The .proto files keep their ``facesearch/v1/`` paths and ``facesearch.v1`` package (the wire
names and the reflection descriptors do not change); only the Python import path of the
generated modules is ``facesearch_contract.v1``, so the contract installs as its own package
(as milvus-proto and Qdrant's generated API do) and importing it never loads the SDK.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE = "facesearch_contract"
# protoc names generated imports after the .proto paths (facesearch/v1/...).
_PROTOC_IMPORT = re.compile(r"^from facesearch\.v1 import ", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    """Compile every .proto under protos/facesearch into ``out/facesearch_contract/v1``."""
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "facesearch").rglob("*.proto")
    )
    include = str(resources.files("grpc_tools") / "_proto")
    package = out / PACKAGE / "v1"
    package.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for old in package.glob("*.py*"):
            old.unlink()
        for src in sorted((Path(tmp) / "facesearch" / "v1").iterdir()):
            text = _PROTOC_IMPORT.sub(f"from {PACKAGE}.v1 import ", src.read_text())
            (package / src.name).write_text(text)
    (package / "__init__.py").write_text('"""Generated protobuf and gRPC stubs (do not edit)."""\n')
    return sorted(p for p in package.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    out = parser.parse_args().out
    written = generate(out)
    print(f"wrote {len(written)} files into {out / PACKAGE / 'v1'}", file=sys.stderr)


if __name__ == "__main__":
    main()
