"""The one config schema (ghdeploy/config_schema.py) against its two documents: README's configuration table
and .env.deploy.example. A key cannot be added without a parser, a row and an example line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
import typer

from ghdeploy import cli, config, config_checks
from ghdeploy.config import KEYS, Config, Key, KeyName, documented_commands, load_config
from ghdeploy.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
ROW_RE = re.compile(r"^\| `(?P<key>[A-Z0-9_]+)` \| (?P<default>[^|]*) \| (?P<used>[^|]*) \| (?P<meaning>.*) \|$")


def _readme_rows() -> dict[str, dict[str, str]]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for line in section.splitlines():
        match = ROW_RE.match(line)
        if match:
            assert match["key"] not in rows, f"README lists {match['key']} twice"
            rows[match["key"]] = {k: v.strip() for k, v in match.groupdict().items()}
    return rows


def _example_lines() -> dict[str, tuple[bool, str]]:
    """KEY -> (commented out?, value) for every `KEY=value` or `# KEY=value` line."""
    found: dict[str, tuple[bool, str]] = {}
    for line in (REPO_ROOT / ".env.deploy.example").read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match[2]] = (bool(match[1]), match[3].strip().strip('"'))
    return found


def test_key_name_literal_lists_exactly_the_schema() -> None:
    assert list(get_args(KeyName)) == list(KEYS), "KeyName must list every declared key, in schema order"


def test_every_key_is_an_attribute_named_after_it() -> None:
    for name, key in KEYS.items():
        assert getattr(Config, name.lower()) is key


def test_every_default_passes_its_own_validation() -> None:
    for key in KEYS.values():
        if key.default is not None:
            key.parse(key.default)  # raises on a default that its own grammar refuses


def test_every_key_is_used_by_a_real_command() -> None:
    names = {c.name for c in typer.main.get_command(cli.app).commands.values()}  # type: ignore[attr-defined]
    for key in KEYS.values():
        assert key.commands, f"{key.name} is used by no command: nothing would validate it"
        for command in key.commands:
            assert command.split()[0] in names, f"{key.name}: {command!r} is not a ghdeploy command"


def test_readme_table_matches_the_schema() -> None:
    rows = _readme_rows()
    assert list(rows) == list(KEYS), "README's table must list every key once, in the schema's order"
    for name, key in KEYS.items():
        row = rows[name]
        if key.default is not None:
            assert row["default"] == f"`{key.default}`", f"README default of {name}"
        elif key.required:
            assert row["default"].startswith("(required"), f"README must say {name} is required"
        else:
            assert not row["default"].startswith("`"), f"{name} has no default, README shows one"
        used = re.findall(r"`([^`]+)`", row["used"])
        assert used == documented_commands(name), f"README 'used by' of {name}"
        assert row["meaning"], name


def test_example_file_documents_every_key_with_its_default() -> None:
    lines = _example_lines()
    assert set(lines) == set(KEYS), (
        f"missing from .env.deploy.example: {sorted(set(KEYS) - set(lines))}; "
        f"not declared keys there: {sorted(set(lines) - set(KEYS))}"
    )
    for name, (commented, value) in lines.items():
        key = KEYS[name]
        if commented and value and key.default is not None:
            assert value == key.default, f".env.deploy.example shows {name}={value}, the default is {key.default}"
        if value:
            key.parse(value)  # the example's own values are valid


def test_a_secret_key_never_shows_its_value() -> None:
    secret: Key[str] = Key(
        "X_TOKEN", config.pattern(re.compile("[a-f0-9]{32}"), "32 hex digits"), None, "t", ("x",), secret=True
    )
    problems: list[str] = []
    config_checks.parse_one(secret, "hunter2-oops", "environment", problems)
    assert problems and all("hunter2" not in p for p in problems), problems
    assert "X_TOKEN" in problems[0]


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(command="hosts", environ={"EC2_HOST": "u@h1"}, cwd=tmp_path)
    with pytest.raises(AttributeError):
        cfg.ec2_host = ()
    with pytest.raises(AttributeError):
        cfg.env_file = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.values["EC2_HOST"] = "x"  # type: ignore[index]


def test_typed_attributes(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("k")
    environ = {
        "ECR_REGISTRY": "r.example.com:5000",
        "AWS_REGION": "eu-west-1",
        "EC2_HOST": "u@h1,h2:2222",
        "EC2_KEY": str(key),
        "GH_API_PORT": "4000",
    }
    cfg = load_config(command="deploy", environ=environ, cwd=tmp_path)
    values: dict[str, Any] = {
        "api": cfg.gh_api_port,
        "health": cfg.health_timeout,
        "key": cfg.ec2_key,
        "hosts": cfg.hosts,
        "tag": cfg.image_tag,
        "asg": cfg.asg_name,
    }
    assert values == {
        "api": 4000,
        "health": 60,
        "key": key,
        "hosts": [config.Host("h1", "u"), config.Host("h2", None, 2222)],
        "tag": None,
        "asg": None,
    }


def test_an_undeclared_key_name_is_refused(tmp_path: Path) -> None:
    cfg = load_config(command="hosts", environ={"EC2_HOST": "u@h1"}, cwd=tmp_path)
    with pytest.raises(KeyError, match="not a declared config key"):
        cfg.get("EC2_HOSTS")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        load_config(needs=["NOPE"], environ={}, cwd=tmp_path)


def test_reading_a_required_key_the_command_did_not_load_names_it(tmp_path: Path) -> None:
    cfg = load_config(command="hosts", environ={"EC2_HOST": "u@h1"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="ECR_REGISTRY is not set"):
        cfg.ecr_registry  # noqa: B018
