"""The nameservers of a resolv.conf file as default upstreams, our own listeners left out;
the file is always one of the test's own, never the machine's."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.cli import build_serve_config
from resolver.errors import ConfigError
from resolver.resolvconf import nameservers, upstreams_from

TEXT = """# generated
search example.test
nameserver 127.0.0.31
nameserver 127.0.0.32 # second
; a comment
nameserver not-an-address
nameserver ::1
nameserver 127.0.0.31
options edns0
"""


def test_nameservers_in_order_without_duplicates_or_junk(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(TEXT)
    assert nameservers(path) == [("127.0.0.31", 53), ("127.0.0.32", 53), ("::1", 53)]


def test_our_own_listening_addresses_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(TEXT)
    taken, ours = upstreams_from(path, [("127.0.0.32", 53), ("::1", 53)])
    assert taken == [("127.0.0.31", 53)]
    assert ours == [("127.0.0.32", 53), ("::1", 53)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [("search x\n", "no nameserver"), ("nameserver 127.0.0.1\n", "only our own")],
    ids=["none", "only-ours"],
)
def test_nothing_usable_is_a_config_error(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason):
        upstreams_from(path, [("127.0.0.1", 53)])


def test_serve_without_upstream_forwards_to_the_files_nameservers_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.41\nnameserver 127.0.0.42\n")
    with caplog.at_level("INFO", logger="resolver"):
        config = build_serve_config(None, listen=("127.0.0.42:53",), resolv_conf=path)
    assert config.forwarder.upstreams == (("127.0.0.41", 53),)
    assert "127.0.0.41:53" in caplog.text
    assert "left out" in caplog.text


def test_an_upstream_given_means_resolv_conf_is_not_read(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    config = build_serve_config(None, upstream=("127.0.0.43",), resolv_conf=missing)
    assert config.forwarder.upstreams == (("127.0.0.43", 53),)


def test_recursive_mode_does_not_read_resolv_conf(tmp_path: Path) -> None:
    config = build_serve_config(None, mode="recursive", resolv_conf=tmp_path / "absent")
    assert config.mode == "recursive"
