"""ghdeploy.hosts: parsing `user@host[:port]` lists, labels, and --host narrowing."""

from __future__ import annotations

import pytest

from ghdeploy.errors import ConfigError
from ghdeploy.hosts import Host, narrow, parse_host, parse_host_list

# --- parse_host -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ubuntu@10.0.0.5", Host("10.0.0.5", "ubuntu", None)),
        ("ubuntu@10.0.0.5:2222", Host("10.0.0.5", "ubuntu", 2222)),
        ("ec2-user@ip-10-0-0-5.ec2.internal", Host("ip-10-0-0-5.ec2.internal", "ec2-user", None)),
        ("gh-1.example.com:22", Host("gh-1.example.com", None, 22)),
        ("bastion", Host("bastion", None, None)),
        ("  deploy@web1  ", Host("web1", "deploy", None)),
        ("_svc.acct@h", Host("h", "_svc.acct", None)),
        ("[::1]", Host("::1", None, None)),
        ("[::1]:2200", Host("::1", None, 2200)),
        ("admin@[2001:db8::5]:65535", Host("2001:db8::5", "admin", 65535)),
        ("admin@[fe80::1]", Host("fe80::1", "admin", None)),
        ("h:1", Host("h", None, 1)),
    ],
)
def test_parse_host_valid(spec: str, expected: Host) -> None:
    assert parse_host(spec) == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ubuntu@", "bad host name"),
        ("h:0", "bad port"),
        ("h:65536", "bad port"),
        ("h:abc", "bad port"),
        ("h:", "bad port"),
        ("h:-1", "bad port"),
        ("h:+22", "bad port"),
        ("[::1]:99999", "bad port"),
        ("1user@h", "bad user"),
        ("bad user@h", "bad user"),
        ("us$er@h", "bad user"),
        ("@h", "bad user"),
        ("2001:db8::1", "IPv6"),
        ("[::1", "unclosed"),
        ("[::1]22", "unexpected"),
        ("[not-an-ip]:22", "bad IPv6"),
        ("[10.0.0.1]", "bad IPv6"),
        ("host name", "bad host name"),
        ("-leading.example.com", "bad host name"),
        ("h;rm -rf /", "bad host name"),
        ("$(touch x)", "bad host name"),
        ("a..b", "bad host name"),
    ],
)
def test_parse_host_invalid(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_host(spec)


def test_user_with_at_sign_in_it_is_refused() -> None:
    # rsplit on "@" leaves "a@b" as the user, which is not a valid user name
    with pytest.raises(ValueError, match="bad user"):
        parse_host("a@b@host")


# --- labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "label"),
    [
        (Host("10.0.0.5"), "10.0.0.5"),
        (Host("10.0.0.5", "ubuntu"), "ubuntu@10.0.0.5"),
        (Host("10.0.0.5", "ubuntu", 2222), "ubuntu@10.0.0.5:2222"),
        (Host("web", None, 22), "web:22"),
        (Host("::1"), "[::1]"),
        (Host("2001:db8::5", "admin", 2200), "admin@[2001:db8::5]:2200"),
    ],
)
def test_label(host: Host, label: str) -> None:
    assert host.label == label
    assert str(host) == label


@pytest.mark.parametrize(
    "spec",
    ["ubuntu@10.0.0.5", "ubuntu@10.0.0.5:2222", "web", "web:22", "[::1]", "admin@[2001:db8::5]:2200", "a_b@c-d.e"],
)
def test_label_round_trip(spec: str) -> None:
    host = parse_host(spec)
    assert host.label == spec
    assert parse_host(host.label) == host


# --- parse_host_list ------------------------------------------------------------------------


def test_list_keeps_deploy_order_and_trims() -> None:
    hosts = parse_host_list(" ubuntu@b.example.com , ubuntu@a.example.com:2222,[::1]:22 ")
    assert [h.label for h in hosts] == ["ubuntu@b.example.com", "ubuntu@a.example.com:2222", "[::1]:22"]


def test_list_of_one() -> None:
    assert parse_host_list("ubuntu@10.0.0.5") == [Host("10.0.0.5", "ubuntu")]


def test_list_ignores_empty_items() -> None:
    assert parse_host_list("a,,b,") == [Host("a"), Host("b")]


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_empty_list_refused(value: str) -> None:
    with pytest.raises(ValueError, match="no host"):
        parse_host_list(value)


@pytest.mark.parametrize(
    "value",
    [
        "u@h,u@h",
        "u@h:22, u@h:22",
        "a,b,a",
        "[::1]:22,[::1]:22",
        # one machine written two ways: one lock and one app directory, so it would lock against itself
        "h1,h1:22",
        "root@h1,h1:22",
        "a@h,b@h",
        "H1,h1",
    ],
)
def test_duplicates_refused(value: str) -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_host_list(value)


def test_same_host_name_on_another_port_is_not_a_duplicate() -> None:
    """A port-forwarding gateway reaches different machines on one name."""
    assert len(parse_host_list("a@h,a@h:2222,a@h:2223")) == 3


def test_one_bad_item_fails_the_list_and_names_it() -> None:
    with pytest.raises(ValueError, match="99999"):
        parse_host_list("u@good,u@bad:99999")


# --- narrow ---------------------------------------------------------------------------------

FLEET = [Host("10.0.0.5", "ubuntu"), Host("10.0.0.6", "ubuntu", 2222), Host("10.0.0.7", "ec2-user")]


def test_narrow_without_names_keeps_all() -> None:
    assert narrow(FLEET, []) == FLEET


def test_narrow_by_label_and_by_hostname() -> None:
    assert narrow(FLEET, ["ubuntu@10.0.0.6:2222"]) == [FLEET[1]]
    assert narrow(FLEET, ["10.0.0.7"]) == [FLEET[2]]


def test_narrow_keeps_fleet_order_not_argument_order() -> None:
    assert narrow(FLEET, ["10.0.0.7", "ubuntu@10.0.0.5"]) == [FLEET[0], FLEET[2]]


def test_narrow_names_a_host_once_even_if_given_twice() -> None:
    assert narrow(FLEET, ["10.0.0.5", "ubuntu@10.0.0.5"]) == [FLEET[0]]


def test_narrow_bare_hostname_matches_every_user_on_it() -> None:
    fleet = [Host("h", "a"), Host("other"), Host("h", "b")]
    assert narrow(fleet, ["h"]) == [fleet[0], fleet[2]]


def test_narrow_unknown_host_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        narrow(FLEET, ["10.0.0.5", "10.9.9.9", "nope"])
    message = info.value.message
    assert "10.9.9.9" in message and "nope" in message
    # and lists what is configured
    assert "ubuntu@10.0.0.6:2222" in message
    assert info.value.hint
