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
    """Copy the files of `<uri>/<relative>` that `<home>/<relative>` lacks (a run published later,
    a new model's ONNX graphs); returns whether any were copied. Each file lands under a temporary
    name first, so a reader never opens half a file."""
    if not uri:
        return False
    filesystem, base = _open(uri)
    source = f"{base.rstrip('/')}/{relative}"
    if filesystem.get_file_info(source).type != pafs.FileType.Directory:
        return False
    copied = False
    for info in filesystem.get_file_info(pafs.FileSelector(source, recursive=True)):
        target = home / relative / info.path[len(source):].lstrip("/")
        if info.type != pafs.FileType.File or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.fetching")
        pafs.copy_files(info.path, str(temp), source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
        temp.replace(target)
        copied = True
    return copied
