"""Downloads from the Hugging Face Hub through huggingface_hub: only the files inference
needs (safetensors, json, tokenizer files, chat templates; never pickles), resumable,
honouring HF_HOME, HF_HUB_OFFLINE, HF_TOKEN and HF_ENDPOINT."""

from __future__ import annotations

from pathlib import Path

from .errors import DownloadError, ModelNotFoundError

ALLOW_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "tokenizer.model",
    "*.tiktoken",
    "*.jinja",
    "*.txt",
    "README.md",
]
NEVER_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.h5", "*.msgpack", "*.py"]


def ensure_local(repo_id: str, allow_download: bool = True, revision: str | None = None,
                 progress=None) -> tuple[Path, str | None]:
    """Local snapshot folder and commit of a Hub repo, downloading what is missing."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        cached = snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS,
                                   ignore_patterns=NEVER_PATTERNS, local_files_only=True)
        folder = Path(cached)
        if any(folder.glob("*.safetensors")):
            return folder, folder.name
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    if not allow_download:
        raise ModelNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache and downloading is off; run "
            f"`mlxdraft pull {repo_id}` first"
        )
    return download(repo_id, revision=revision, progress=progress)


def download(repo_id: str, revision: str | None = None, progress=None) -> tuple[Path, str | None]:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS,
                                        ignore_patterns=NEVER_PATTERNS))
    except Exception as exc:
        raise DownloadError(f"could not download {repo_id}: {exc}") from exc
    return folder, folder.name
