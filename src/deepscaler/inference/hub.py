"""Model name -> local folder: a Hugging Face model folder as it is, or a hub id through huggingface_hub.

A hub id ("org/name") is resolved by `huggingface_hub.snapshot_download`: online, it downloads what the
cache lacks and returns the snapshot folder (HF_HOME/hub/models--ORG--NAME/snapshots/COMMIT); offline
(HF_HUB_OFFLINE=1), or when the hub cannot be reached, it returns the snapshot already in the cache.
add_to_hub_cache writes a folder of one's own into that cache, so that a hub id resolves to it offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from deepscaler.files import sha256_file

# What transformers and vLLM load from a model repository: configs, tokenizer files (JSON, vocabularies, merges,
# sentencepiece and tiktoken models, chat templates) and safetensors weights. Left out: other copies of the
# weights (PyTorch .bin, TensorFlow, Flax, ONNX), code (*.py: remote code is not run here), READMEs and images.
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]


class ModelNotFoundError(FileNotFoundError):
    """A model name that is neither a local model folder nor a hub id that could be resolved."""


def resolve_model(name: str | Path, revision: str | None = None) -> Path:
    """The local folder holding model `name`: a folder with config.json, or the snapshot of hub id `name` at
    `revision` (a branch, tag or commit hash; default: the main branch), downloaded or taken from the cache."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{str(name)!r} is not a model folder (no config.json in it)")
        if revision is not None:
            raise ModelNotFoundError(f"{str(name)!r} is a local folder: it has no revision {revision!r} "
                                     "(a revision applies to hub ids)")
        return folder
    if not _is_hub_id(str(name)):
        raise ModelNotFoundError(f"model folder not found: {str(name)!r}")
    return _snapshot(str(name), revision)


def _is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a hub repository id ("name" or "org/name"), as huggingface_hub checks it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_commit(folder: Path) -> str | None:
    """The commit a folder resolved from the hub holds (the client names each snapshot folder by its commit
    hash), or None for a folder of one's own."""
    return folder.name if folder.parent.name == "snapshots" else None


def _snapshot(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import constants, errors, snapshot_download

    offline = constants.is_offline_mode()
    try:
        # snapshot_download falls back to the cache by itself when the hub cannot be reached; offline, say so
        # up front, so that it reads the cache without first trying a request.
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES, local_files_only=offline)
    except (errors.LocalEntryNotFoundError, errors.HfHubHTTPError) as error:
        why = _why_unresolved(error, offline)
        at = f" at revision {revision!r}" if revision else ""
        raise ModelNotFoundError(f"model {repo_id!r}{at} is neither a local folder nor found on the Hugging Face "
                                 f"hub or in its cache at {constants.HF_HUB_CACHE} ({why})") from None
    return Path(folder)


def _why_unresolved(error: Exception, offline: bool) -> str:
    from huggingface_hub import errors

    unreachable = "offline: HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
    if isinstance(error, errors.IncompleteSnapshotError):
        return f"the cached copy is incomplete, and {unreachable}"
    if isinstance(error, errors.RevisionNotFoundError):
        return "the hub has no such revision"
    if isinstance(error, errors.RepositoryNotFoundError):
        return "the hub has no such repository, or it is private or gated: log in with `hf auth login`"
    if isinstance(error, errors.HfHubHTTPError):
        return f"the hub answered {str(error).splitlines()[0]}"
    return unreachable


def commit_of(folder: Path) -> str:
    """A commit hash for a folder of one's own, made from its files' names and contents: the same files always
    give the same hash, as on the hub (40 hex digits, the form the client expects of a snapshot's name)."""
    digest = hashlib.sha1()
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(f"{file.name}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def add_to_hub_cache(folder: Path, repo_id: str, hub_cache: Path, commit: str | None = None,
                     branch: str | None = "main") -> Path:
    """Place the files of model `folder` in hub cache `hub_cache` (HF_HOME/hub) as the hub client lays out a
    download of `repo_id` at `commit` (default: commit_of(folder)): each file stored once under blobs/ by its
    sha256, hard-linked to the file in `folder` where the file system allows (else copied); snapshots/COMMIT/ a
    folder of relative links to the blobs; refs/BRANCH naming the commit (none when branch is None).
    Returns the snapshot folder, which resolve_model(repo_id) then finds, offline too."""
    if not _is_hub_id(repo_id) or "/" not in repo_id:
        raise ValueError(f"{repo_id!r} is not a hub id of the form org/name")
    commit = commit or commit_of(folder)
    repo = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        blob = repo / "blobs" / sha256_file(file)
        if not blob.exists():
            _link_or_copy(file, blob)
        link = snapshot / file.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..", "..", "blobs", blob.name))
    if branch is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return snapshot


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where source and target share a file system (no second copy of the weights), else a copy;
    either way under a temporary name first, so that a reader never sees half a blob."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.incomplete")
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)
