"""protoc (from grpcio-tools) over a folder of ``.proto`` files -> one serialized FileDescriptorSet.

The one protoc call in the project: ``arcana plugin build`` embeds a plugin's
descriptors with it, and the kernel's own services (``proto/``) are compiled
with it once, at release time, into ``runtime/proto/kernel.pb``::

    python -m arcana_sdk.protoc proto runtime/proto/kernel.pb

Imports are included (``--include_imports``) and source info is not, so the
output depends only on the ``.proto`` files and the protoc version.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from .toolchain import ToolchainMissing, require_grpc_tools

__all__ = ["ProtocError", "compile_proto_dir", "proto_files"]

TIMEOUT_S = 120


class ProtocError(Exception):
    """protoc refused the files; ``output`` is what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message if not output.strip() else f"{message}\n{output.strip()}")
        self.message = message
        self.output = output


def proto_files(proto_dir: Path) -> list[str]:
    """Every ``.proto`` under ``proto_dir``, relative to it and sorted (so the output is stable)."""
    if not proto_dir.is_dir():
        return []
    return sorted(p.relative_to(proto_dir).as_posix() for p in proto_dir.rglob("*.proto"))


def compile_proto_dir(proto_dir: Path) -> bytes:
    """Compile every ``.proto`` under ``proto_dir`` (the import root); raises ProtocError or ToolchainMissing."""
    proto_dir = Path(proto_dir).resolve()
    files = proto_files(proto_dir)
    if not files:
        raise ProtocError(f"no .proto files in {proto_dir}")
    require_grpc_tools()
    import grpc_tools

    # The well-known types (google/protobuf/*.proto) ship inside grpcio-tools.
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="arcana-protoc-") as tmp:
        out = Path(tmp) / "descriptors.pb"
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *files,
        ]
        try:
            proc = subprocess.run(cmd, cwd=proto_dir, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ProtocError(f"protoc timed out after {TIMEOUT_S}s on {proto_dir}") from exc
        if proc.returncode != 0:
            output = "\n".join(part for part in (proc.stderr, proc.stdout) if part.strip())
            raise ProtocError(f"protoc failed on {proto_dir} with exit code {proc.returncode}", output)
        if not out.is_file():
            raise ProtocError(f"protoc reported success on {proto_dir} but wrote no descriptor set")
        return out.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m arcana_sdk.protoc",
        description="Compile a folder of .proto files into one FileDescriptorSet (imports included).",
    )
    parser.add_argument("proto_dir", type=Path, help="the import root holding the .proto files")
    parser.add_argument("output", type=Path, help="the .pb file to write")
    args = parser.parse_args(argv)
    try:
        data = compile_proto_dir(args.proto_dir)
    except (ProtocError, ToolchainMissing) as exc:
        print(f"protoc: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes, {len(proto_files(args.proto_dir.resolve()))} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
