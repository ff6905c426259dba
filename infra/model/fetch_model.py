"""Put a model family's checkpoint where the GPU workers load it: once, and only when missing.

The compose service `model` runs this before any GPU worker starts. A complete checkpoint of
the family already in place (downloaded earlier, or a host directory mounted for an air-gapped
install) is left alone. Otherwise the files are downloaded from the hub into a partial directory
next to the target, checked (complete, and a checkpoint of the requested family), and renamed
into place, so a worker never sees half a checkpoint and an interrupted download resumes where
it stopped. ``--family`` (``MODEL_FAMILY``) picks the family's published repository and
directory (``deepseek-ocr``: deepseek-ai/DeepSeek-OCR to /models/DeepSeek-OCR;
``unlimited-ocr``: baidu/Unlimited-OCR to /models/Unlimited-OCR).

    python infra/model/fetch_model.py [--family deepseek-ocr|unlimited-ocr] [--repo REPO]
                                      [--revision main] [--target DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from scriptorium.model_families import DEFAULT_MODEL_FAMILY, MODEL_FAMILY_NAMES, ModelFamily
from worker.engine.deepseek.architecture import DeepSeekOcrArchitecture, UnsupportedConfig
from worker.engine.deepseek.checkpoint import HUB_DOWNLOAD_PATTERNS, CheckpointError, inspect_checkpoint
from worker.engine.profiles import profile_of

DEFAULT_REPO = profile_of(DEFAULT_MODEL_FAMILY).hub_id
DEFAULT_REVISION = "main"
DEFAULT_TARGET = profile_of(DEFAULT_MODEL_FAMILY).default_model_dir


class Downloader(Protocol):
    def __call__(
        self, *, repo_id: str, revision: str, local_dir: str, allow_patterns: list[str]
    ) -> object: ...


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def partial_directory(target: Path) -> Path:
    return target.parent / f".{target.name}.partial"


def check_family(directory: Path, family: ModelFamily | None) -> None:
    """Raise unless ``directory`` is a complete checkpoint (of ``family``, when given)."""
    files = inspect_checkpoint(directory)
    if family is None:
        return
    try:
        found = DeepSeekOcrArchitecture.from_config(files.read_config()).family
    except UnsupportedConfig as error:
        raise CheckpointError(f"{files.config}: {error}") from error
    if found is not family:
        raise CheckpointError(f"{directory} holds a {found} checkpoint, not {family}")


def fetch_model(
    target: Path,
    *,
    repo: str,
    revision: str,
    download: Downloader | None = None,
    offline: bool = False,
    family: ModelFamily | None = None,
) -> str:
    """Make ``target`` hold a complete checkpoint (of ``family``); returns what was done, for the log."""
    if target.is_dir() and not any(target.iterdir()):
        try:
            target.rmdir()  # made by hand; the download is renamed into place
        except OSError as error:
            message = f"{target} is empty and cannot be replaced ({error}); mount its parent directory"
            raise CheckpointError(message) from error
    if target.exists():
        check_family(target, family)  # a broken directory someone put here is theirs to fix
        return f"checkpoint present at {target}; nothing to download"
    if offline:
        raise CheckpointError(
            f"no checkpoint at {target} and the hub is off (HF_HUB_OFFLINE): copy the "
            f"{repo} files into that directory (docs/DEPLOY.md, air-gapped install)"
        )
    partial = partial_directory(target)
    partial.mkdir(parents=True, exist_ok=True)
    fetch = download or _snapshot_download
    try:
        patterns = list(HUB_DOWNLOAD_PATTERNS)
        fetch(repo_id=repo, revision=revision, local_dir=str(partial), allow_patterns=patterns)
    except Exception as error:
        raise CheckpointError(
            f"downloading {repo}@{revision} failed ({error}); check the network, HF_TOKEN, or install the "
            "checkpoint by hand (docs/DEPLOY.md, air-gapped install); a rerun resumes the download"
        ) from error
    check_family(partial, family)
    partial.rename(target)
    return f"downloaded {repo}@{revision} to {target}"


def _snapshot_download(*, repo_id: str, revision: str, local_dir: str, allow_patterns: list[str]) -> object:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, revision=revision, local_dir=local_dir, allow_patterns=allow_patterns)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--family",
        choices=MODEL_FAMILY_NAMES,
        default=os.environ.get("MODEL_FAMILY") or DEFAULT_MODEL_FAMILY.value,
        help="the model family to fetch (MODEL_FAMILY); sets the default repo and target",
    )
    parser.add_argument("--repo", default=os.environ.get("MODEL_REPO"))
    parser.add_argument("--revision", default=os.environ.get("MODEL_REVISION") or DEFAULT_REVISION)
    parser.add_argument(
        "--target",
        default=os.environ.get("SCRIPTORIUM_ENGINE__MODEL_PATH"),
        help="the directory the workers load (SCRIPTORIUM_ENGINE__MODEL_PATH)",
    )
    args = parser.parse_args(argv)
    profile = profile_of(args.family)
    target = Path(args.target or profile.default_model_dir)
    try:
        message = fetch_model(
            target,
            repo=args.repo or profile.hub_id,
            revision=args.revision,
            offline=hub_offline(),
            family=profile.family,
        )
        print(message)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
