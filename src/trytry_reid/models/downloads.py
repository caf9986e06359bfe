"""ImageNet weight files in torch's hub cache, downloaded on first use.

The cache is torchvision's: ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``), so a file torchvision already fetched is reused and the other way round.
A file in the cache is used as it is, without touching the network. A missing one is downloaded with
``torch.hub.download_url_to_file``: a progress bar on stderr, a temporary file renamed into place only when
complete, and the SHA-256 check against the hash prefix in the file name (``resnet50-0676ba61.pth``).
Offline, the error is one line naming the URL and the exact path to place the file at.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import torch

from trytry_reid.errors import ReidError

log = logging.getLogger("trytry_reid")


class WeightsDownloadError(ReidError, OSError):
    """Weights that are not in the cache and could not be downloaded; names the URL and where to put the file."""


def hub_cache_path(url: str) -> Path:
    """Where torch's hub cache keeps the file of ``url`` (as ``torch.hub.load_state_dict_from_url``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def cached_download(url: str, what: str) -> Path:
    """The cached file of ``url``, downloaded (with its checksum checked) when absent; ``what`` names it."""
    path = hub_cache_path(url)
    if path.is_file():
        return path
    match = re.search(torch.hub.HASH_REGEX, path.name)
    hash_prefix = match.group(1) if match else None
    log.info("downloading %s from %s to %s", what, url, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix, progress=True)
    except (OSError, http.client.HTTPException) as error:
        raise WeightsDownloadError(
            f"cannot download {what} from {url} ({one_line(error)}): place that file at '{path}' "
            "(or set model.pretrained to none or to a weights file)") from error
    except RuntimeError as error:  # torch.hub's checksum mismatch; the partial file is already removed
        if "hash" not in str(error):
            raise
        raise WeightsDownloadError(f"the download of {what} from {url} failed its SHA-256 check "
                                   f"({one_line(error)}); nothing was written to '{path}'") from error
    return path


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a URLError's is its reason, an HTTPError's its status)."""
    plain_url_error = isinstance(error, URLError) and not isinstance(error, HTTPError)
    text = str(error.reason if plain_url_error else error) or type(error).__name__
    return " ".join(text.split())
