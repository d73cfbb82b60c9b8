"""Artefacts at a URI: trained runs, catalogue embeddings and ONNX exports, shared between the
jobs that make them and the replicas that serve them.

`artifacts.uri` is a local path or any URI pyarrow's filesystems open (s3://, gs://, hdfs://,
file://). Jobs `publish` a folder under `<home>` to the same relative path under the URI; a
replica `fetch`es what it lacks into `<home>` before loading (ONNX Runtime and torch read local
files). With no URI everything stays under `<home>`, as on one machine.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs


def _open(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    return pafs.FileSystem.from_uri(uri)


def publish(home: Path, relative: str, uri: str) -> bool:
    """Copy `<home>/<relative>` (a folder) to `<uri>/<relative>`; False when there is nothing to copy."""
    source = home / relative
    if not uri or not source.is_dir():
        return False
    filesystem, base = _open(uri)
    target = f"{base.rstrip('/')}/{relative}"
    filesystem.create_dir(target, recursive=True)
    pafs.copy_files(str(source), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)
    return True


def fetch(home: Path, relative: str, uri: str) -> bool:
    """Copy `<uri>/<relative>` into `<home>/<relative>` when it exists there and not here yet."""
    local = home / relative
    if not uri or local.exists():
        return False
    filesystem, base = _open(uri)
    source = f"{base.rstrip('/')}/{relative}"
    if filesystem.get_file_info(source).type != pafs.FileType.Directory:
        return False
    local.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(source, str(local), source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
    return True
