"""Check a model folder before a runtime sees it, and say in one line what is wrong.

The runtimes fail late and obscurely on a bad folder: a missing external-data file is a protobuf
error deep in session creation, a weights file the service user cannot read (onnx writes them mode
0600) looks like corruption, an OpenVINO folder given to ORT is "genai_config.json not found". This
module names the file and the fix, reads nothing heavier than JSON and XML headers, and tells text
models from vision models so the backend can pick the right pipeline.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

from edge.core.errors import ModelError
from edge.core.kinds import BackendName

log = logging.getLogger(__name__)

Format = BackendName  # a folder's format is named after the backend that reads it
Kind = Literal["text", "vision"]

ORT_TYPES: dict[str, Kind] = {"phi3": "text", "phi3v": "vision"}
OV_TYPES: dict[str, Kind] = {"phi3": "text", "phi3_v": "vision"}

ORT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
OV_TOKENIZER_MODELS = ("openvino_tokenizer", "openvino_detokenizer")
OV_VISION_MODELS = (
    "openvino_language_model",
    "openvino_text_embeddings_model",
    "openvino_vision_embeddings_model",
    "openvino_vision_projection_model",
)
# An .onnx file this small keeps its weights elsewhere; scanning it for external-data names is cheap.
_SCAN_ONNX_BELOW = 64 * 1024 * 1024
# TensorProto.external_data entry {key: "location", value: <name>} as protobuf bytes.
_LOCATION = re.compile(rb"\n\x08location\x12([\x01-\x7f])")


@dataclass(frozen=True)
class ModelFolder:
    """A folder that passed validation: which runtime format, text or vision, and what it holds."""

    path: Path
    format: Format
    kind: Kind
    model_type: str  # as the config spells it: phi3, phi3v, phi3_v
    name: str  # folder name, reported in results
    context_length: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    num_crops: int | None = None  # from the processor config (vision only)
    files: tuple[str, ...] = field(default=(), repr=False)  # every file checked, relative

    @property
    def vision(self) -> bool:
        return self.kind == "vision"


def _fail(folder: Path, msg: str) -> ModelError:
    return ModelError(f"model folder {folder}: {msg}")


def _check_file(folder: Path, rel: str) -> Path:
    """Exists, is a regular file, is not empty, and this process can actually read it."""
    path = folder / rel
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(folder, f"missing file {rel}") from None
    except OSError as err:
        raise _fail(folder, f"cannot stat {rel}: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _fail(folder, f"{rel} is not a regular file")
    if st.st_size == 0:
        raise _fail(folder, f"{rel} is empty (interrupted download or copy?)")
    try:
        # os.access() lies for root and under some ACLs: a real read is the only honest test.
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        raise _fail(
            folder,
            f"{rel} is not readable by uid {os.geteuid()} (mode {stat.S_IMODE(st.st_mode):04o}, "
            f"owner uid {st.st_uid}): chmod a+r it or chown it to the service user",
        ) from None
    except OSError as err:
        raise _fail(folder, f"cannot read {rel}: {err.strerror}") from None
    return path


def _load_json(folder: Path, rel: str) -> Any:
    path = _check_file(folder, rel)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(folder, f"{rel} is not valid JSON ({err})") from None


def _external_data(folder: Path, rel: str) -> list[str]:
    """Names of the external-data files a small .onnx refers to (onnx stores them as 'location')."""
    path = folder / rel
    if path.stat().st_size >= _SCAN_ONNX_BELOW:
        return []
    data = path.read_bytes()
    names = set()
    for m in _LOCATION.finditer(data):
        n = m.group(1)[0]
        raw = data[m.end() : m.end() + n]
        try:
            names.add(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return sorted(names)


def _check_onnx(folder: Path, rel: str, checked: list[str]) -> None:
    _check_file(folder, rel)
    checked.append(rel)
    base = (folder / rel).parent
    for name in _external_data(folder, rel):
        ext = (base / name).relative_to(folder).as_posix()
        if ext not in checked:
            _check_file(folder, ext)
            checked.append(ext)


def _ort(folder: Path) -> ModelFolder:
    cfg = _load_json(folder, "genai_config.json")
    checked = ["genai_config.json"]
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model, dict):
        raise _fail(folder, "genai_config.json has no 'model' section")
    mtype = model.get("type")
    if mtype not in ORT_TYPES:
        raise _fail(
            folder, f"genai_config.json model type {mtype!r} is not supported (expected one of: phi3, phi3v)"
        )
    kind = ORT_TYPES[mtype]
    sections = ["decoder"] + (["vision", "embedding"] if kind == "vision" else [])
    for section in sections:
        filename = (model.get(section) or {}).get("filename")
        if not isinstance(filename, str) or not filename:
            raise _fail(folder, f"genai_config.json: model.{section}.filename is missing")
        _check_onnx(folder, filename, checked)
    for rel in ORT_TOKENIZER_FILES:
        _load_json(folder, rel)
        checked.append(rel)
    num_crops = None
    if kind == "vision":
        proc = _load_json(folder, "processor_config.json")
        checked.append("processor_config.json")
        num_crops = _find_num_crops(proc)
    # every weights file in the folder must be readable, referenced or not (onnx writes them 0600)
    for extra in sorted(folder.glob("*.data")) + sorted(folder.glob("*.onnx_data")):
        if extra.name not in checked:
            _check_file(folder, extra.name)
            checked.append(extra.name)
    eos_ids = _eos_ids(model.get("eos_token_id"))
    ctx = model.get("context_length")
    return ModelFolder(
        path=folder,
        format="ort-genai",
        kind=kind,
        model_type=mtype,
        name=folder.name,
        context_length=ctx if isinstance(ctx, int) else None,
        eos_token_ids=eos_ids,
        num_crops=num_crops,
        files=tuple(checked),
    )


def _find_num_crops(proc: Any) -> int | None:
    """num_crops from an ORT processor_config.json (Phi3ImageTransform attrs) or HF preprocessor."""
    if isinstance(proc, dict):
        if isinstance(proc.get("num_crops"), int):
            return int(proc["num_crops"])
        for value in proc.values():
            found = _find_num_crops(value)
            if found is not None:
                return found
    elif isinstance(proc, list):
        for value in proc:
            found = _find_num_crops(value)
            if found is not None:
                return found
    return None


def _check_ir(folder: Path, stem: str, checked: list[str]) -> None:
    """An IR pair: a well-formed .xml (parsed for its root only) and a non-empty .bin."""
    xml = _check_file(folder, f"{stem}.xml")
    try:
        for _event, elem in ElementTree.iterparse(xml, events=("start",)):
            if elem.tag != "net":
                raise _fail(folder, f"{stem}.xml is not an OpenVINO IR (root <{elem.tag}>)")
            break
    except ElementTree.ParseError as err:
        raise _fail(folder, f"{stem}.xml is not valid XML ({err})") from None
    with open(xml, "rb") as fh:  # a cut-off copy parses fine up to here: check that it ends
        fh.seek(max(0, xml.stat().st_size - 64))
        if not fh.read().rstrip().endswith(b"</net>"):
            raise _fail(folder, f"{stem}.xml is not valid XML (truncated: no closing </net>)")
    _check_file(folder, f"{stem}.bin")
    checked += [f"{stem}.xml", f"{stem}.bin"]


def _openvino(folder: Path) -> ModelFolder:
    cfg = _load_json(folder, "config.json")
    checked = ["config.json"]
    mtype = cfg.get("model_type") if isinstance(cfg, dict) else None
    if mtype not in OV_TYPES:
        raise _fail(
            folder, f"config.json model_type {mtype!r} is not supported (expected one of: phi3, phi3_v)"
        )
    kind = OV_TYPES[mtype]
    if kind == "vision":
        if not (folder / "openvino_language_model.xml").exists():
            raise _fail(folder, "config.json says phi3_v but openvino_language_model.xml is missing")
        for stem in OV_VISION_MODELS:
            _check_ir(folder, stem, checked)
    else:
        if not (folder / "openvino_model.xml").exists():
            raise _fail(folder, "config.json says phi3 but openvino_model.xml is missing")
        _check_ir(folder, "openvino_model", checked)
    for stem in OV_TOKENIZER_MODELS:
        _check_ir(folder, stem, checked)
    num_crops = None
    if kind == "vision":
        proc = _load_json(folder, "preprocessor_config.json")
        checked.append("preprocessor_config.json")
        num_crops = _find_num_crops(proc)
    eos_ids: tuple[int, ...] = ()
    gen_path = folder / "generation_config.json"
    if gen_path.exists():
        gen = _load_json(folder, "generation_config.json")
        checked.append("generation_config.json")
        eos_ids = _eos_ids(gen.get("eos_token_id") if isinstance(gen, dict) else None)
    ctx = cfg.get("max_position_embeddings")
    return ModelFolder(
        path=folder,
        format="openvino",
        kind=kind,
        model_type=mtype,
        name=folder.name,
        context_length=ctx if isinstance(ctx, int) else None,
        eos_token_ids=eos_ids,
        num_crops=num_crops,
        files=tuple(checked),
    )


def detect_format(folder: Path) -> Format:
    if (folder / "genai_config.json").exists():
        return "ort-genai"
    if (folder / "openvino_model.xml").exists() or (folder / "openvino_language_model.xml").exists():
        return "openvino"
    raise _fail(
        folder,
        "not a model folder: no genai_config.json (ONNX Runtime GenAI) and no openvino_model.xml or "
        "openvino_language_model.xml (OpenVINO IR)",
    )


def inspect_folder(path: Path | str | None) -> ModelFolder:
    """Validate a model folder of either format; raises ModelError naming the file at fault."""
    if path is None:
        raise ModelError("model.path is not set: point it at a model folder")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelError(f"model folder {folder} does not exist")
    if not folder.is_dir():
        raise ModelError(f"model.path {folder} is not a directory")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise ModelError(f"model folder {folder} is not readable by uid {os.geteuid()}")
    fmt = detect_format(folder)
    found = _ort(folder) if fmt == "ort-genai" else _openvino(folder)
    log.debug("model folder ok: %s format=%s kind=%s files=%d", folder, fmt, found.kind, len(found.files))
    return found


def validate_for(path: Path | str | None, backend: Format) -> ModelFolder:
    """inspect_folder, and refuse a folder of the other runtime's format with the setting to change."""
    found = inspect_folder(path)
    if found.format != backend:
        what = "an ONNX Runtime GenAI" if found.format == "ort-genai" else "an OpenVINO IR"
        raise ModelError(
            f"model folder {found.path} is {what} folder but model.backend is {backend!r} "
            f"(set model.backend = {found.format!r})"
        )
    return found


def folder_kind(path: Path | str | None, backend: Format) -> Kind:
    """Text or vision from the folder's own config only (genai_config.json or config.json): quick
    and side-effect free, for `config check`. Raises ModelError for a missing or foreign folder."""
    if path is None:
        raise ModelError("not set: point it at a model folder")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"model folder {folder} does not exist" if not folder.exists() else f"{folder} is not a directory"
        )
    fmt = detect_format(folder)
    if fmt != backend:
        what = "an ONNX Runtime GenAI" if fmt == "ort-genai" else "an OpenVINO IR"
        raise ModelError(f"model folder {folder} is {what} folder but the backend is {backend!r}")
    if fmt == "ort-genai":
        cfg = _load_json(folder, "genai_config.json")
        model = cfg.get("model") if isinstance(cfg, dict) else None
        mtype = model.get("type") if isinstance(model, dict) else None
        types: dict[str, Kind] = ORT_TYPES
    else:
        cfg = _load_json(folder, "config.json")
        mtype = cfg.get("model_type") if isinstance(cfg, dict) else None
        types = OV_TYPES
    if mtype not in types:
        raise _fail(folder, f"model type {mtype!r} is not supported (expected one of: {', '.join(types)})")
    return types[mtype]


def _eos_ids(value: object) -> tuple[int, ...]:
    """Both runtimes' configs give eos_token_id as one id or a list of ids."""
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, int))
    return (value,) if isinstance(value, int) else ()
