"""Downloads from the Hugging Face Hub through huggingface_hub: only the files inference
needs (safetensors, json, tokenizer files, chat templates, the model card; never pickles or
code), with a free-disk check first, resumable, honouring HF_HOME, HF_HUB_OFFLINE, HF_TOKEN
and HF_ENDPOINT. Also what the local cache holds.

GGUF models (the llama.cpp engine) are single files in repos that hold every quantization:
only the listed .gguf file (or every part of a split one) is fetched, with hf_hub_download,
never the whole repo."""

from __future__ import annotations

import errno
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import DownloadError, ModelNotFoundError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")  # owner/name

ALLOW_PATTERNS = [
    "*.safetensors",
    "*.json",
    "tokenizer.model",
    "*.tiktoken",
    "*.jinja",
    "*.txt",
    "README.md",
]
IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.h5", "*.msgpack",
                   "*.npz", "*.py", "*.onnx", "*.gguf"]


def cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def _snapshot_is_complete(snapshot: Path) -> bool:
    if not (snapshot / "config.json").is_file():
        return False
    index = snapshot / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable or not an index
            return False
        return all(isinstance(shard, str) and (snapshot / shard).is_file() for shard in shards)
    return any(snapshot.glob("*.safetensors"))


def local_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot of the repo's main revision, if it is complete."""
    folder = repo_folder(repo_id)
    ref = folder / "refs" / "main"
    candidates = []
    if ref.is_file():
        candidates.append(folder / "snapshots" / ref.read_text().strip())
    candidates += sorted((folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []
    for snapshot in candidates:
        if _snapshot_is_complete(snapshot):
            return snapshot
    return None


def local_status(repo_id: str) -> str:
    """'downloaded', 'partial' (something is cached, not all) or 'absent'."""
    if local_snapshot(repo_id) is not None:
        return "downloaded"
    return "partial" if repo_folder(repo_id).exists() else "absent"


def ensure_local(repo_id: str, allow_download: bool = True, progress=None) -> tuple[Path, str | None]:
    """Local snapshot folder and commit of a Hub repo, downloading what is missing."""
    snapshot = local_snapshot(repo_id)
    if snapshot is not None:
        return snapshot, snapshot.name
    if not allow_download:
        raise ModelNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache ({cache_dir()}) and downloading is off; "
            f"run `mlxdraft pull {repo_id}` first"
        )
    return download(repo_id, progress=progress)


@dataclass(frozen=True)
class RemoteRepo:
    repo_id: str
    commit: str
    files: dict[str, int]  # file name -> size in bytes (only the files we would download)

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


_LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}


def _hub_error(repo_id: str, exc: Exception) -> DownloadError:
    """One user-facing message per kind of Hub failure."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return DownloadError(f"{repo_id} is gated: accept its license on the Hugging Face Hub, then set "
                             "HF_TOKEN to a token of that account")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return DownloadError(f"{repo_id} was not found on the Hugging Face Hub (or is private); check the "
                             "repo id, for example with `mlxdraft models`")
    if isinstance(exc, errors.RevisionNotFoundError):
        return DownloadError(f"{repo_id} has no such revision on the Hugging Face Hub")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return DownloadError(f"{repo_id} needs authorization (HTTP {status}); set HF_TOKEN to a token "
                             "that can read it")
    if isinstance(exc, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError)) or "offline" in str(exc).lower():
        return DownloadError(f"cannot download {repo_id}: offline mode is on (HF_HUB_OFFLINE) and it is "
                             "not in the cache; unset HF_HUB_OFFLINE or pull it on a connected machine")
    if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:  # our disk, not the network
        from .files import describe_os_error

        reason = describe_os_error(Path(exc.filename) if exc.filename else cache_dir(), exc)
        return DownloadError(f"cannot download {repo_id} into {cache_dir()}: {reason}; free some space or point "
                             "HF_HOME at a folder you can write to")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    kept = ": files already downloaded are kept" if repo_folder(repo_id).exists() else ""
    return DownloadError(f"could not download {repo_id} from the Hugging Face Hub ({first_line}); check "
                         f"the network and run the command again{kept}")


def remote_repo(repo_id: str) -> RemoteRepo:
    """The repo's commit and the sizes of the files we would fetch."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as exc:  # every Hub failure becomes one message that names the repo
        raise _hub_error(repo_id, exc) from exc
    siblings = {s.rfilename: (s.size or 0) for s in (info.siblings or [])}
    wanted = filter_repo_objects(siblings, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return RemoteRepo(repo_id, info.sha, {name: siblings[name] for name in wanted})


def missing_bytes(remote: RemoteRepo) -> int:
    """Bytes still to fetch: files not yet in the snapshot folder for that commit."""
    snapshot = repo_folder(remote.repo_id) / "snapshots" / remote.commit
    return sum(size for name, size in remote.files.items() if not (snapshot / name).is_file())


def free_bytes(path: Path) -> int:
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk_space(remote: RemoteRepo, needed: int) -> None:
    free = free_bytes(cache_dir())
    if needed > free:
        raise DownloadError(
            f"not enough disk space for {remote.repo_id}: it needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free in {cache_dir()}; free some space or point HF_HOME at a larger disk"
        )


def download(repo_id: str, progress=None) -> tuple[Path, str]:
    """Download (or finish downloading) the inference files of `repo_id`; returns (folder, commit)."""
    from huggingface_hub import snapshot_download

    remote = remote_repo(repo_id)
    needed = missing_bytes(remote)
    check_disk_space(remote, needed)
    if progress:
        progress(f"Downloading {repo_id} ({needed / 1e9:.2f} GB to fetch, "
                 f"{len(remote.files)} files) into {cache_dir()} ...")
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS,
                                        ignore_patterns=IGNORE_PATTERNS))
    except Exception as exc:  # every Hub failure becomes one message that names the repo
        raise _hub_error(repo_id, exc) from exc
    return folder, folder.name


def _snapshots(repo_id: str) -> list[Path]:
    """Snapshot folders of a cached repo: the main revision's first, then the others."""
    folder = repo_folder(repo_id)
    ref = folder / "refs" / "main"
    candidates = [folder / "snapshots" / ref.read_text().strip()] if ref.is_file() else []
    candidates += sorted((folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []
    return list(dict.fromkeys(candidates))


def local_gguf(repo_id: str, files: tuple[str, ...] | list[str]) -> Path | None:
    """The cached first file of a GGUF model from a snapshot that holds every one of its files
    (the main revision's first), else None."""
    for snapshot in _snapshots(repo_id):
        if files and all((snapshot / name).is_file() for name in files):
            return snapshot / files[0]
    return None


def gguf_local_status(repo_id: str, files: tuple[str, ...] | list[str]) -> str:
    """'downloaded', 'partial' (some of the files) or 'absent'."""
    if local_gguf(repo_id, files) is not None:
        return "downloaded"
    held = any((snapshot / name).is_file() for snapshot in _snapshots(repo_id) for name in files)
    return "partial" if held else "absent"


def _snapshot_commit(repo_id: str, path: Path) -> str | None:
    try:
        return path.relative_to(repo_folder(repo_id) / "snapshots").parts[0]
    except (ValueError, IndexError):
        return None


def ensure_gguf(repo_id: str, files: tuple[str, ...] | list[str], allow_download: bool = True,
                progress=None) -> tuple[Path, str | None]:
    """Local path of the first file of a GGUF model and its commit, downloading what is missing."""
    first = local_gguf(repo_id, files)
    if first is not None:
        return first, _snapshot_commit(repo_id, first)
    if not allow_download:
        raise ModelNotFoundError(
            f"{files[0]} of {repo_id} is not in the local Hugging Face cache ({cache_dir()}) and downloading "
            "is off; pull it first"
        )
    return download_gguf(repo_id, files, progress=progress)


def remote_gguf(repo_id: str, files: tuple[str, ...] | list[str]) -> RemoteRepo:
    """The repo's commit and the sizes of the GGUF files; every file must be in the repo."""
    from huggingface_hub import HfApi

    bad = [name for name in files if not name.endswith(".gguf")]
    if bad:
        raise DownloadError(f"{bad[0]} is not a .gguf file; only GGUF files are downloaded for llama.cpp")
    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as exc:  # every Hub failure becomes one message that names the repo
        raise _hub_error(repo_id, exc) from exc
    siblings = {s.rfilename: (s.size or 0) for s in (info.siblings or [])}
    missing = [name for name in files if name not in siblings]
    if missing:
        held = sorted(name for name in siblings if name.endswith(".gguf"))
        shown = ", ".join(held[:6]) + (f" and {len(held) - 6} more" if len(held) > 6 else "") or "none"
        raise DownloadError(f"{repo_id} has no file {missing[0]} on the Hugging Face Hub (its GGUF files: "
                            f"{shown}); the model list is out of date, or the file was renamed")
    return RemoteRepo(repo_id, info.sha, {name: siblings[name] for name in files})


def download_gguf(repo_id: str, files: tuple[str, ...] | list[str], progress=None) -> tuple[Path, str]:
    """Download (or finish downloading) the files of one GGUF model, pinned to one commit;
    returns (path of the first file, commit). Parts of a split GGUF land in one folder."""
    from huggingface_hub import hf_hub_download

    remote = remote_gguf(repo_id, files)
    needed = missing_bytes(remote)
    check_disk_space(remote, needed)
    if progress:
        what = files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1} more parts"
        progress(f"Downloading {what} from {repo_id} ({needed / 1e9:.2f} GB to fetch) into {cache_dir()} ...")
    paths = []
    try:
        for name in files:
            paths.append(Path(hf_hub_download(repo_id, name, revision=remote.commit)))
    except Exception as exc:  # every Hub failure becomes one message that names the repo
        raise _hub_error(repo_id, exc) from exc
    return paths[0], remote.commit
