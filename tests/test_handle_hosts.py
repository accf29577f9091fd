"""Remote backbones on a shared server (``CONFINE_PATHS=1``): a typed ``http(s)://`` handle
or bare Kaggle handle loads only as ``https://`` on a host of ``ALLOWED_HANDLE_HOSTS``
(default TF Hub / Kaggle Models); the catalogue's own handles always do. Refused from the
text alone: no name lookup, no connection."""

from __future__ import annotations

import socket

import pytest

from pipelines import settings
from pipelines.__main__ import main
from pipelines.backbones import catalogue, resolve
from pipelines.errors import UserError

REFUSED = "is refused on this shared server"


@pytest.fixture
def no_network(monkeypatch):
    """Any name lookup or connection fails the test."""
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network used: {args}")

    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    yield calls
    assert not calls


@pytest.fixture
def shared(monkeypatch, no_network):
    monkeypatch.setenv("CONFINE_PATHS", "1")
    monkeypatch.delenv("ALLOWED_HANDLE_HOSTS", raising=False)


@pytest.mark.parametrize(
    "handle",
    [
        "https://evil.example.org/model/1",
        "http://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",  # not https
        "https://tfhub.dev@evil.example.org/model",  # user info: the host is evil.example.org
        "https://tfhub.dev.evil.example.org/model",
        "https://storage.googleapis.com/anyones-bucket/model.tar.gz",
        "https://tfhub.dev:notaport/model",
    ],
)
def test_a_typed_handle_off_the_allow_list_is_refused_before_any_connection(shared, handle):
    with pytest.raises(UserError, match=REFUSED) as refused:
        resolve(handle)
    message = str(refused.value)
    assert "ALLOWED_HANDLE_HOSTS: tfhub.dev, www.kaggle.com, kaggle.com" in message
    assert "pick a catalogue backbone" in message


@pytest.mark.parametrize(
    "handle, url",
    [
        (
            "https://tfhub.dev/google/some/feature_vector/1",
            "https://tfhub.dev/google/some/feature_vector/1",
        ),
        ("https://www.kaggle.com/models/google/m/tensorFlow2/x/1", None),
        (
            "google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2",
            "https://www.kaggle.com/models/",
        ),
        ("https://TFHub.dev/google/mixed-case/1", None),
    ],
)
def test_allow_listed_hosts_resolve_without_a_connection(shared, handle, url):
    spec = resolve(handle)
    assert spec.is_remote
    if url:
        assert spec.handle.startswith(url)


def test_catalogue_handles_load_whatever_the_allow_list(shared, monkeypatch):
    monkeypatch.setenv("ALLOWED_HANDLE_HOSTS", "none")
    remote = [s for s in catalogue() if s.is_remote]
    assert remote, "the catalogue has TF Hub entries"
    for spec in remote:
        assert resolve(spec.handle) == spec
        assert resolve(spec.id) == spec
    with pytest.raises(UserError, match=r"ALLOWED_HANDLE_HOSTS: none\)"):
        resolve("https://tfhub.dev/google/not/in/the/catalogue/1")


def test_the_allow_list_replaces_the_default(shared, monkeypatch):
    monkeypatch.setenv("ALLOWED_HANDLE_HOSTS", " Models.Example.org , mirror.example.net ")
    assert settings.allowed_handle_hosts() == ["models.example.org", "mirror.example.net"]
    assert resolve("https://models.example.org/m/1").handle == "https://models.example.org/m/1"
    with pytest.raises(UserError, match=REFUSED):
        resolve("https://tfhub.dev/google/some/feature_vector/1")


def test_a_local_server_accepts_any_remote_handle(monkeypatch, no_network):
    monkeypatch.setenv("CONFINE_PATHS", "0")
    assert resolve("http://anything.example.org/m").handle == "http://anything.example.org/m"


def test_the_cli_refuses_too(shared, capsys):
    # The same check the workers run (they inherit CONFINE_PATHS from the dashboard).
    code = main(["classify", "--backbone", "https://evil.example.org/m/1", "nothing.png"])
    assert code == 2
    err = capsys.readouterr().err
    assert REFUSED in err and "Traceback" not in err
