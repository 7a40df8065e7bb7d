"""Face model files: which ones a config uses, whether they are the known files, installing them.

The package ships a manifest (``daemon/data/models.json``: file name, role, size, SHA-256 and the
weights licence of each model menjin knows) but never the models themselves: the installer brings
them on a USB stick, a folder or an archive (``.tar``, ``.tar.gz``, ``.zip``), and nothing here
touches the network.  A file is installed only when its SHA-256 matches the manifest, through a
temporary file renamed into place, so a corrupted copy never replaces a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Literal

from daemon.config import VisionSection

CHUNK_BYTES = 1 << 20
Status = Literal["ok", "missing", "corrupt", "unknown"]


class ModelInstallError(Exception):
    """The source has no usable copy of a model; the message says which and why."""


@dataclass(frozen=True)
class KnownModel:
    """One manifest entry: ``sha256`` in lower-case hex, ``size`` in bytes."""

    file: str
    role: str
    size: int
    licence: str
    sha256: str


@dataclass(frozen=True)
class ConfiguredModel:
    """A model file named by the config: ``role`` is detector, embedder or liveness."""

    role: str
    kind: str
    path: Path


@dataclass(frozen=True)
class ModelCheck:
    """The verdict on one configured model file; ``detail`` is one plain sentence."""

    model: ConfiguredModel
    status: Status
    licence: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"role": self.model.role, "kind": self.model.kind, "path": str(self.model.path),
                "licence": self.licence, "status": self.status, "detail": self.detail}


def manifest() -> dict[str, KnownModel]:
    """The shipped manifest, keyed by file name."""
    text = resources.files("daemon").joinpath("data/models.json").read_text(encoding="utf-8")
    return {
        m["file"]: KnownModel(m["file"], m["role"], int(m["bytes"]), m["licence"], m["sha256"])
        for m in json.loads(text)["models"]
    }


def configured_models(vision: VisionSection) -> list[ConfiguredModel]:
    """The model files of a vision section, in pipeline order."""
    models = [ConfiguredModel("detector", vision.detector.kind, vision.detector.path),
              ConfiguredModel("embedder", vision.embedder.kind, vision.embedder.path)]
    if vision.liveness is not None:
        models += [ConfiguredModel("liveness", vision.liveness.kind, p)
                   for p in vision.liveness.paths]
    return models


def sha256_of(stream: IO[bytes]) -> str:
    """SHA-256 (hex) of everything left in a binary stream."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def check_model(model: ConfiguredModel, known: dict[str, KnownModel]) -> ModelCheck:
    """Compare one configured file with the manifest entry of the same name."""
    entry = known.get(model.path.name)
    licence = entry.licence if entry else "unknown"
    if not model.path.is_file():
        return ModelCheck(model, "missing", licence, f"{model.path} does not exist")
    if entry is None:
        return ModelCheck(model, "unknown", licence,
                          f"{model.path.name} is not in menjin's model manifest: its origin and "
                          "licence cannot be checked")
    with model.path.open("rb") as fh:
        digest = sha256_of(fh)
    if digest != entry.sha256:
        return ModelCheck(model, "corrupt", licence,
                          f"SHA-256 {digest[:12]}… differs from the manifest's "
                          f"{entry.sha256[:12]}… (damaged or a different file)")
    return ModelCheck(model, "ok", licence, "SHA-256 matches the manifest")


def check_models(vision: VisionSection) -> list[ModelCheck]:
    """:func:`check_model` for every model of the vision section."""
    known = manifest()
    return [check_model(m, known) for m in configured_models(vision)]


@contextmanager
def _members(source: Path) -> Iterator[dict[str, IO[bytes] | Path]]:
    """Readable model files of a folder or archive, by base name (folders yield paths)."""
    if source.is_dir():
        yield {p.name: p for p in sorted(source.rglob("*.onnx")) if p.is_file()}
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = [n for n in zf.namelist() if n.endswith(".onnx")]
            yield {Path(n).name: zf.open(n) for n in names}
    elif source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source) as tf:
            found: dict[str, IO[bytes] | Path] = {}
            for member in tf.getmembers():
                stream = tf.extractfile(member) if member.isfile() else None
                if stream is not None and member.name.endswith(".onnx"):
                    found[Path(member.name).name] = stream
            yield found
    elif not source.exists():
        raise ModelInstallError(f"{source} does not exist")
    else:
        raise ModelInstallError(f"{source} is neither a folder nor a .tar/.tar.gz/.zip archive")


def _copy_verified(stream: IO[bytes], dest: Path, entry: KnownModel) -> None:
    """Write ``stream`` to ``dest`` only if its SHA-256 matches ``entry`` (atomic rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != entry.sha256:
            raise ModelInstallError(
                f"{entry.file}: SHA-256 {digest.hexdigest()[:12]}… in the source differs from the "
                f"manifest's {entry.sha256[:12]}…: the copy is damaged; nothing was installed")
        Path(tmp).chmod(0o644)
        Path(tmp).replace(dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def install_models(source: Path, models: list[ConfiguredModel]) -> list[ModelCheck]:
    """Copy each configured model from ``source`` to its configured path, verified first.

    Every model is looked up (by file name, anywhere in the folder or archive) before any is
    written; each copy is verified against the manifest before it replaces anything, so a damaged
    copy never lands.  Files already in place and matching are left alone.  Returns the checks
    after installing.

    Raises:
        ModelInstallError: the source is unreadable, lacks a model, or holds a damaged copy.
    """
    known = manifest()
    wanted = [m for m in models if check_model(m, known).status != "ok"]
    with _members(source) as members:
        problems = []
        for model in wanted:
            if model.path.name not in known:
                problems.append(f"{model.path.name} is not in menjin's model manifest; copy it "
                                "yourself if you trust it")
            elif model.path.name not in members:
                problems.append(f"{model.path.name} is not in {source}")
        if problems:
            raise ModelInstallError("; ".join(problems) + "; nothing was installed")
        for model in wanted:
            item = members[model.path.name]
            if isinstance(item, Path):
                with item.open("rb") as fh:
                    _copy_verified(fh, model.path, known[model.path.name])
            else:
                _copy_verified(item, model.path, known[model.path.name])
    return [check_model(m, known) for m in models]
