#!/usr/bin/env python3
"""Generate `gateway/_proto/` from `proto/` with grpcio-tools and mypy-protobuf.

    python tools/gen_proto.py           # regenerate gateway/_proto in place
    python tools/gen_proto.py --check   # exit 1 if the checked-in code differs (CI)

Why this script instead of a bare protoc line: protoc writes `from fixgw.v1 import x_pb2`, which
only resolves when `fixgw` is a top-level package. We keep the proto package path (`fixgw/v1`,
which is what the descriptors and buf want) and rewrite those imports to
`gateway._proto.fixgw.v1`, so the generated code lives inside our package and nothing has to
be put on sys.path. Generation happens in a temporary directory and is compared file by file,
so `--check` catches stale, missing and stray files alike.

The output depends on the grpcio-tools and mypy-protobuf versions (they stamp versions into the
files); CI must run the same versions the code was generated with.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.resources
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "gateway" / "_proto"
PY_PACKAGE = "gateway._proto"

INIT_TEXT = {
    Path("__init__.py"): '"""Generated code; regenerate with `python tools/gen_proto.py`."""\n',
    Path("fixgw/__init__.py"): "",
    Path("fixgw/v1/__init__.py"): "",
}

# `from fixgw.v1 import events_pb2 as ...` in *_pb2.py and *_pb2_grpc.py.
_FROM_IMPORT = re.compile(r"^from fixgw(\.v\d+) import ", re.MULTILINE)
# `import fixgw.v1.common_pb2` and `fixgw.v1.common_pb2.Source` in mypy-protobuf stubs; only module
# paths (ending in _pb2/_pb2_grpc), never proto full names such as "fixgw.v1.Event".
_DOTTED_MODULE = re.compile(r"(?<![\w.])fixgw(\.v\d+\.\w+_pb2(?:_grpc)?)\b")
# The module name protobuf stamps into generated classes (`__module__`, pickling).
_BUILDER_MODULE = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'fixgw\.")


def _plugin(name: str) -> str:
    """Locate a protoc plugin next to this interpreter first, so a venv's plugin wins."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        sys.exit(f"gen_proto: {name} not found (pip install mypy-protobuf)")
    return found


def _rewrite(text: str, suffix: str) -> str:
    text = _FROM_IMPORT.sub(rf"from {PY_PACKAGE}.fixgw\1 import ", text)
    text = _BUILDER_MODULE.sub(rf"\1'{PY_PACKAGE}.fixgw.", text)
    if suffix == ".pyi":
        text = _DOTTED_MODULE.sub(rf"{PY_PACKAGE}.fixgw\1", text)
    return text


def generate(into: Path) -> None:
    protos = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        sys.exit("gen_proto: no .proto files under proto/")
    wkt = importlib.resources.files("grpc_tools") / "_proto"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={into}",
        f"--grpc_python_out={into}",
        f"--mypy_out={into}",
        f"--mypy_grpc_out={into}",
        *protos,
    ]
    proc = subprocess.run(cmd, cwd=PROTO_DIR, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"gen_proto: protoc failed:\n{proc.stderr}")
    for path in into.rglob("*"):
        if path.suffix in (".py", ".pyi"):
            path.write_text(_rewrite(path.read_text(encoding="utf-8"), path.suffix), "utf-8")
    for rel, text in INIT_TEXT.items():
        (into / rel).parent.mkdir(parents=True, exist_ok=True)
        (into / rel).write_text(text, encoding="utf-8")


def _tree(root: Path) -> dict[Path, bytes]:
    if not root.exists():
        return {}
    return {
        p.relative_to(root): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _diff(fresh: dict[Path, bytes], current: dict[Path, bytes]) -> list[str]:
    problems: list[str] = []
    for rel in sorted(fresh.keys() | current.keys()):
        if rel not in current:
            problems.append(f"missing: gateway/_proto/{rel}")
        elif rel not in fresh:
            problems.append(f"stray (not generated): gateway/_proto/{rel}")
        elif fresh[rel] != current[rel]:
            problems.append(f"differs: gateway/_proto/{rel}")
            problems.extend(
                difflib.unified_diff(
                    current[rel].decode("utf-8", "replace").splitlines(),
                    fresh[rel].decode("utf-8", "replace").splitlines(),
                    "checked-in",
                    "generated",
                    lineterm="",
                    n=1,
                )
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if gateway/_proto differs from a fresh run"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gen_proto_") as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh = _tree(fresh_root)
        current = _tree(OUT_DIR)
        problems = _diff(fresh, current)
        if args.check:
            if problems:
                print("gateway/_proto is stale; run `python tools/gen_proto.py`:", file=sys.stderr)
                print("\n".join(problems[:200]), file=sys.stderr)
                return 1
            print(f"gateway/_proto is up to date ({len(fresh)} files)")
            return 0
        for rel in current.keys() - fresh.keys():
            (OUT_DIR / rel).unlink()
        for rel, data in fresh.items():
            target = OUT_DIR / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if current.get(rel) != data:
                target.write_bytes(data)
        changed = sum(1 for rel, data in fresh.items() if current.get(rel) != data)
        removed = len(current.keys() - fresh.keys())
        print(f"gateway/_proto: {len(fresh)} files generated, {changed} written, {removed} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
