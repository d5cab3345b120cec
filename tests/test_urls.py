"""Backend URLs: malformed ones are a ConfigError saying what is wrong and what is accepted."""

from __future__ import annotations

import pytest

from sd_core import ConfigError
from sd_core._url import parse_backend

SECRET = "s3cr3t-T0KEN"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("consul://127.0.0.1:8500/web", "127.0.0.1:8500"),
        ("consul://agent.dc1.consul/web", "agent.dc1.consul"),
        ("consul://Agent-1:8500/web", "Agent-1:8500"),
        ("etcd://[::1]:2379/web", "[::1]:2379"),
        ("etcd://[::1]/web", "[::1]"),
        ("etcd://[fe80::1%25eth0]:2379/web", "[fe80::1%eth0]:2379"),
        ("etcd://[fe80::1%eth0]:2379/web", "[fe80::1%eth0]:2379"),
        ("consul://web%2Dagent:8500/web", "web-agent:8500"),
        ("consul://h:65535/web", "h:65535"),
        ("consul://h:1/web", "h:1"),
        ("local:///web", None),
    ],
)
def test_good_addresses(url: str, address: str | None) -> None:
    target = parse_backend(url + f"?token={SECRET}")
    assert target.address == address
    assert target.service == "web"
    assert target.query == {"token": [SECRET]}


BAD = [
    ("consul://127.0.0.1:0/web", "port is 0"),
    ("consul://h:65536/web", "port is not a number in 1..65535"),
    ("consul://h:99999999999/web", "port is not a number in 1..65535"),
    ("consul://h:-1/web", "port is not a number in 1..65535"),
    ("consul://h:http/web", "port is not a number in 1..65535"),
    ("consul://h:\uff18\uff15/web", "port is not a number in 1..65535"),
    ("consul://h:/web", "port is missing"),
    ("consul://[::1/web", "opens '\\[' without closing it"),
    ("consul://[::1]x:8500/web", "other than ':PORT' after '\\]'"),
    ("consul://[abc]:8500/web", "in brackets but is not an IPv6 address"),
    ("consul://[10.0.0.1]:8500/web", "in brackets but is not an IPv6 address"),
    ("consul://::1:8500/web", "IPv6 address goes in brackets"),
    ("consul://%3A%3A1:8500/web", "IPv6 address, which goes in brackets"),
    ("consul://a b:8500/web", "host 'a b' holds ' '"),
    ("consul://a%20b:8500/web", "host 'a b' holds ' '"),
    ("consul://a%0Ab:8500/web", "host 'a\\\\nb' holds"),
    ("consul://a%00:8500/web", "holds"),
    ("consul://a%ff:8500/web", "not valid UTF-8"),
    ("consul://-agent:8500/web", "not a hostname"),
    ("consul://999.0.0.1:8500/web", "not a valid IPv4 address"),
    ("consul://[fe80::1%25eth%200]:8500/web", "zone"),
    ("consul://:8500/web", "has no host"),
    ("consul://h:8500/we%0Ab", "service 'we\\\\nb' holds a control character"),
    ("consul://h:8500/we%ffb", "service \\(its path\\) is not valid UTF-8"),
    ("consul://h:8500/web#frag", "fragment"),
    ("consul://h\n:8500/web", "control character"),
    ("consul://h:8500/web?x=1\ny", "control character"),
]


@pytest.mark.parametrize(("url", "message"), BAD)
def test_malformed_urls_are_config_errors_saying_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_backend(url)
    text = str(info.value)
    if "control character" not in text and "fragment" not in text and "service" not in text:
        assert "accepted: HOST or HOST:PORT" in text
        assert "1..65535" in text


@pytest.mark.parametrize(("url", "message"), BAD)
def test_errors_never_quote_the_query(url: str, message: str) -> None:
    separator = "&" if "?" in url else "?"
    for secret_url in (
        f"{url}{separator}token={SECRET}",
        f"{url}{separator}token={SECRET}\n",
        f"{url}{separator}token=%0A{SECRET}",
    ):
        with pytest.raises(ConfigError) as info:
            parse_backend(secret_url)
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)


def test_a_password_mistyped_into_the_address_is_not_quoted() -> None:
    # "user:pass/word@host" splits at the "/": the "port" is part of the password.
    with pytest.raises(ConfigError) as info:
        parse_backend("consul://user:pa55/word@h:8500/web")
    assert "pa55" not in str(info.value)
