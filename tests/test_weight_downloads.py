"""model.pretrained: imagenet reads torchvision's file from torch's hub cache ($TORCH_HOME) and downloads it
there when absent, with its checksum checked; offline it fails in one line naming the URL and the path.
Nothing here touches the network: downloads are made to fail, go to a closed local port, or read file:// URLs."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from trytry_reid.errors import ReidError
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.models.backbones import BACKBONES, build_backbone
from trytry_reid.models.downloads import WeightsDownloadError

REAL_DOWNLOAD = torch.hub.download_url_to_file
URL = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url
FILE_NAME = URL.rsplit("/", 1)[1]    # mobilenet_v2-<sha256 prefix>.pth


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty $TORCH_HOME; any download that is not redirected by the test fails loudly."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"the network was touched: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


def mobilenet_file(path: Path) -> dict:
    """Save a random mobilenet_v2 trunk's state dict and an ImageNet classifier at ``path``."""
    torch.manual_seed(3)
    trunk, _ = BACKBONES["mobilenet_v2"].build(2)
    state = {**trunk.state_dict(), "classifier.1.weight": torch.zeros(1000, 1280),
             "classifier.1.bias": torch.zeros(1000)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def assert_loaded(trunk, state):
    for key in ("features.0.0.weight", "features.17.conv.2.weight", "features.18.1.running_mean"):
        assert torch.equal(trunk.state_dict()[key], state[key]), key


def test_a_cached_file_is_used_without_the_network(torch_home):
    state = mobilenet_file(torch_home / "hub" / "checkpoints" / FILE_NAME)
    trunk, _ = build_backbone("mobilenet_v2", pretrained="imagenet")
    assert_loaded(trunk, state)


def test_a_missing_file_is_downloaded_into_the_cache_with_its_checksum_and_progress(torch_home, monkeypatch):
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix, progress))
        mobilenet_file(Path(dst))

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    trunk, _ = build_backbone("mobilenet_v2", pretrained="imagenet")
    cached = torch_home / "hub" / "checkpoints" / FILE_NAME
    assert calls == [(URL, str(cached), FILE_NAME.split("-")[1].split(".")[0], True)]
    assert_loaded(trunk, torch.load(cached, weights_only=True))
    build_backbone("mobilenet_v2", pretrained="imagenet")     # now a cache hit: no second download
    assert len(calls) == 1


def assert_offline_error(error: BaseException, url: str, torch_home: Path):
    message = str(error)
    cached = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    assert isinstance(error, ReidError) and "\n" not in message
    assert url in message and f"'{cached}'" in message
    assert not any(cached.parent.glob("*"))                   # no partial file left behind


def test_offline_the_error_names_the_url_and_where_to_put_the_file(torch_home, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsDownloadError) as error:
        build_backbone("mobilenet_v2", pretrained="imagenet")
    assert_offline_error(error.value, URL, torch_home)
    assert "name resolution" in str(error.value)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_url(monkeypatch, url: str) -> None:
    monkeypatch.setitem(BACKBONES, "mobilenet_v2", dataclasses.replace(BACKBONES["mobilenet_v2"], imagenet_url=url))


def test_an_unreachable_server_fails_the_same_way_at_once(torch_home, monkeypatch):
    """torch's own downloader against a closed local port: connection refused, no hang, one line."""
    monkeypatch.setattr(torch.hub, "download_url_to_file", REAL_DOWNLOAD)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    url = f"http://127.0.0.1:{closed_port()}/weights/{FILE_NAME}"
    with_url(monkeypatch, url)
    with pytest.raises(WeightsDownloadError) as error:
        build_backbone("mobilenet_v2", pretrained="imagenet")
    assert_offline_error(error.value, url, torch_home)


def served_file(tmp_path: Path, hash_prefix: str | None = None) -> tuple[str, dict]:
    """A weights file behind a file:// URL whose name carries the SHA-256 prefix (or ``hash_prefix``)."""
    staged = tmp_path / "server" / "staged.pth"
    state = mobilenet_file(staged)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    served = staged.with_name(f"mobilenet_v2-{hash_prefix or digest[:8]}.pth")
    staged.rename(served)
    return served.as_uri(), state


def test_the_real_downloader_checks_the_sha256_prefix(tmp_path, torch_home, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", REAL_DOWNLOAD)
    url, state = served_file(tmp_path)
    with_url(monkeypatch, url)
    trunk, _ = build_backbone("mobilenet_v2", pretrained="imagenet")
    assert_loaded(trunk, state)
    assert (torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1]).is_file()

    bad_url, _ = served_file(tmp_path / "bad", hash_prefix="00000000")
    with_url(monkeypatch, bad_url)
    with pytest.raises(WeightsDownloadError, match="SHA-256") as error:
        build_backbone("mobilenet_v2", pretrained="imagenet")
    assert "\n" not in str(error.value)
    assert not (torch_home / "hub" / "checkpoints" / bad_url.rsplit("/", 1)[1]).exists()


def test_train_offline_is_one_line_and_exit_2(torch_home, monkeypatch, tmp_path, capsys):
    def offline(url, *args, **kwargs):
        raise URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    config = Path(__file__).resolve().parents[1] / "config" / "demo_digits.yml"
    code = cli_main(["train", "--config", str(config), "model.backbone=mobilenet_v2", "model.pretrained=imagenet",
                     "data.mean=null", "data.std=null", f"output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and URL in lines[0] and str(torch_home) in lines[0]
    assert not (tmp_path / "run").exists()
