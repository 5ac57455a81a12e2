"""ghdeploy.config.load_config: precedence, ~ expansion, all-at-once validation, per-command needs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ghdeploy import config
from ghdeploy.config import BUILD_KEYS, DEPLOY_KEYS, PUSH_KEYS, load_config
from ghdeploy.errors import ConfigError, ExitCode
from ghdeploy.hosts import Host

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write_env(directory: Path, text: str, name: str = ".env.deploy") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _key_file(tmp_path: Path) -> Path:
    key = tmp_path / "deploy.pem"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    return key


def _valid_deploy_environ(tmp_path: Path) -> dict[str, str]:
    return {
        "ECR_REGISTRY": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "ECR_REPOSITORY": "ghosthands",
        "AWS_REGION": "us-east-1",
        "EC2_HOST": "ubuntu@10.0.0.5,ec2-user@10.0.0.6:2222",
        "EC2_KEY": str(_key_file(tmp_path)),
        "IMAGE_TAG": "abc1234",
    }


def _problems_for(problems: list[str], key: str) -> list[str]:
    return [p for p in problems if p.startswith(key)]


# --- precedence ---------------------------------------------------------------------------


def test_flag_beats_environment_file_and_default(tmp_path: Path) -> None:
    _write_env(tmp_path, "GH_API_PORT=3003\n")
    cfg = load_config(
        needs=["GH_API_PORT"], overrides={"GH_API_PORT": "3001"}, environ={"GH_API_PORT": "3002"}, cwd=tmp_path
    )
    assert cfg.text("GH_API_PORT") == "3001"
    assert cfg.sources["GH_API_PORT"] == "flag"


def test_environment_beats_file_and_default(tmp_path: Path) -> None:
    _write_env(tmp_path, "GH_API_PORT=3003\n")
    cfg = load_config(needs=["GH_API_PORT"], environ={"GH_API_PORT": "3002"}, cwd=tmp_path)
    assert cfg.text("GH_API_PORT") == "3002"
    assert cfg.sources["GH_API_PORT"] == "environment"


def test_file_beats_default(tmp_path: Path) -> None:
    env_file = _write_env(tmp_path, "GH_API_PORT=3003\n")
    cfg = load_config(needs=["GH_API_PORT"], environ={}, cwd=tmp_path)
    assert cfg.text("GH_API_PORT") == "3003"
    assert cfg.sources["GH_API_PORT"] == str(env_file)
    assert cfg.env_file == env_file


def test_default_when_nothing_else(tmp_path: Path) -> None:
    cfg = load_config(needs=["GH_API_PORT"], environ={}, cwd=tmp_path)
    assert cfg.env_file is None
    assert cfg.number("GH_API_PORT") == 3100
    assert cfg.sources["GH_API_PORT"] == "default"
    # the other documented defaults
    assert cfg.text("GH_WORKER_PORT") == "3101"
    assert cfg.text("GHOSTHANDS_DIR") == "/opt/ghosthands"
    assert cfg.text("GH_ENVIRONMENT") == "production"
    assert cfg.text("HEALTH_TIMEOUT") == "60"
    assert cfg.text("DRAIN_TIMEOUT") == "60"
    assert cfg.text("STOP_TIMEOUT") == "35"
    assert cfg.get("IMAGE_TAG") is None  # default is HEAD's short SHA, decided later


def test_flag_given_as_none_means_not_given(tmp_path: Path) -> None:
    """The CLI passes {"IMAGE_TAG": tag} with tag=None when --tag is absent."""
    _write_env(tmp_path, "IMAGE_TAG=fromfile\n")
    cfg = load_config(needs=["IMAGE_TAG"], overrides={"IMAGE_TAG": None}, environ={}, cwd=tmp_path)
    assert cfg.text("IMAGE_TAG") == "fromfile"


def test_precedence_is_per_key(tmp_path: Path) -> None:
    _write_env(tmp_path, "ECR_REGISTRY=file.example.com\nECR_REPOSITORY=from-file\nIMAGE_TAG=t-file\n")
    cfg = load_config(
        needs=BUILD_KEYS,
        overrides={"IMAGE_TAG": "t-flag"},
        environ={"ECR_REPOSITORY": "from-env"},
        cwd=tmp_path,
    )
    assert cfg.values["ECR_REGISTRY"] == "file.example.com"
    assert cfg.values["ECR_REPOSITORY"] == "from-env"
    assert cfg.values["IMAGE_TAG"] == "t-flag"
    assert cfg.image_name == "file.example.com/from-env"


def test_explicit_env_file_replaces_the_one_in_cwd(tmp_path: Path) -> None:
    _write_env(tmp_path, "ECR_REGISTRY=cwd.example.com\nGH_WORKER_PORT=4000\n")
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir()
    other = _write_env(other_dir, "ECR_REGISTRY=other.example.com\n", name="staging.env")
    cfg = load_config(needs=["ECR_REGISTRY"], env_file=other, environ={}, cwd=tmp_path)
    assert cfg.env_file == other
    assert cfg.registry == "other.example.com"
    # nothing leaks in from ./.env.deploy when --env-file is given
    assert cfg.text("GH_WORKER_PORT") == "3101"


def test_env_file_quotes_and_comments(tmp_path: Path) -> None:
    _write_env(
        tmp_path,
        "# deploy settings\n"
        'ECR_REGISTRY="quoted.example.com"\n'
        "export AWS_REGION=eu-west-1\n"
        "ECR_REPOSITORY=ghosthands # inline comment\n",
    )
    cfg = load_config(needs=PUSH_KEYS, overrides={"IMAGE_TAG": "v1"}, environ={}, cwd=tmp_path)
    assert cfg.registry == "quoted.example.com"
    assert cfg.text("AWS_REGION") == "eu-west-1"
    assert cfg.repository == "ghosthands"


# --- ~ expansion --------------------------------------------------------------------------


def test_tilde_expanded_in_key_and_known_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "gh.pem"
    key.write_text("key")
    monkeypatch.setenv("HOME", str(home))
    environ = {**_valid_deploy_environ(tmp_path), "EC2_KEY": "~/.ssh/gh.pem"}
    cfg = load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert cfg.text("EC2_KEY") == str(key)
    assert cfg.path("EC2_KEY") == key
    # the default known_hosts is under the (patched) home, not a literal "~"
    assert cfg.text("SSH_KNOWN_HOSTS") == str(home / ".ssh" / "known_hosts")
    assert "~" not in cfg.text("SSH_KNOWN_HOSTS")


def test_tilde_expanded_for_values_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "k.pem").write_text("key")
    monkeypatch.setenv("HOME", str(home))
    _write_env(tmp_path, "EC2_KEY=~/k.pem\nSSH_KNOWN_HOSTS=~/kh\n")
    cfg = load_config(needs=["EC2_KEY", "SSH_KNOWN_HOSTS"], environ={}, cwd=tmp_path)
    assert cfg.text("EC2_KEY") == str(home / "k.pem")
    assert cfg.text("SSH_KNOWN_HOSTS") == str(home / "kh")


# --- validation: every problem at once ----------------------------------------------------


def test_valid_deploy_config_parses_hosts_in_order(tmp_path: Path) -> None:
    cfg = load_config(needs=DEPLOY_KEYS, environ=_valid_deploy_environ(tmp_path), cwd=tmp_path)
    assert cfg.hosts == [Host("10.0.0.5", "ubuntu", None), Host("10.0.0.6", "ec2-user", 2222)]
    assert cfg.compose_file == "/opt/ghosthands/docker-compose.prod.yml"


def test_staging_picks_the_staging_compose_file(tmp_path: Path) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "GH_ENVIRONMENT": "staging", "GHOSTHANDS_DIR": "/srv/gh/"}
    cfg = load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert cfg.compose_file == "/srv/gh/docker-compose.staging.yml"


def test_several_missing_keys_are_named_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ={}, cwd=tmp_path)
    err = info.value
    assert err.exit_code == ExitCode.BAD_INPUT
    for key in ("ECR_REGISTRY", "AWS_REGION", "EC2_HOST", "EC2_KEY"):
        assert _problems_for(err.problems, key), f"{key} not reported in {err.problems}"
    # keys with defaults are not reported as missing
    for key in ("ECR_REPOSITORY", "GHOSTHANDS_DIR", "GH_API_PORT", "HEALTH_TIMEOUT"):
        assert not _problems_for(err.problems, key)
    assert err.hint and ".env.deploy" in err.hint
    # the message carries every problem too
    for problem in err.problems:
        assert problem in err.message


def test_all_kinds_of_problems_reported_at_once(tmp_path: Path) -> None:
    environ = {
        # ECR_REGISTRY and AWS_REGION missing
        "EC2_HOST": "ubuntu@bad host!",
        "EC2_KEY": str(tmp_path / "missing.pem"),
        "IMAGE_TAG": "-leading-dash",
        "HEALTH_TIMEOUT": "soon",
        "GH_ENVIRONMENT": "prod",
    }
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    problems = info.value.problems
    assert _problems_for(problems, "ECR_REGISTRY")
    assert _problems_for(problems, "AWS_REGION")
    (host_problem,) = _problems_for(problems, "EC2_HOST")
    assert "bad host!" in host_problem
    (key_problem,) = _problems_for(problems, "EC2_KEY")
    assert "missing.pem" in key_problem and "no such file" in key_problem
    (tag_problem,) = _problems_for(problems, "IMAGE_TAG")
    assert "-leading-dash" in tag_problem
    (timeout_problem,) = _problems_for(problems, "HEALTH_TIMEOUT")
    assert "soon" in timeout_problem
    (env_problem,) = _problems_for(problems, "GH_ENVIRONMENT")
    assert "prod" in env_problem and "production" in env_problem
    assert len(problems) == 7, problems


@pytest.mark.parametrize(
    "host",
    ["ubuntu@", "user@host:99999", "user@host:abc", "2001:db8::1", "a@h,a@h", "bad user@host", " , "],
)
def test_malformed_ec2_host(tmp_path: Path, host: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "EC2_HOST": host}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert len(_problems_for(info.value.problems, "EC2_HOST")) == 1, info.value.problems


@pytest.mark.parametrize("tag", ["-x", ".x", "a" * 129, "with space", "semi;colon", "a/b", "ü"])
def test_invalid_image_tag(tmp_path: Path, tag: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(needs=BUILD_KEYS, environ={"ECR_REGISTRY": "r.example.com", "IMAGE_TAG": tag}, cwd=tmp_path)
    assert _problems_for(info.value.problems, "IMAGE_TAG")


@pytest.mark.parametrize("tag", ["abc1234", "v1.2.3", "_x", "A-b_c.d", "a" * 128])
def test_valid_image_tag(tmp_path: Path, tag: str) -> None:
    cfg = load_config(needs=BUILD_KEYS, environ={"ECR_REGISTRY": "r.example.com", "IMAGE_TAG": tag}, cwd=tmp_path)
    assert cfg.text("IMAGE_TAG") == tag


@pytest.mark.parametrize("key", ["HEALTH_TIMEOUT", "DRAIN_TIMEOUT", "STOP_TIMEOUT"])
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "10s"])
def test_non_numeric_timeouts(tmp_path: Path, key: str, value: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), key: value}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, key)


@pytest.mark.parametrize("value", ["prod", "Production", "dev", "staging "])
def test_bad_gh_environment(tmp_path: Path, value: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "GH_ENVIRONMENT": value}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, "GH_ENVIRONMENT")


@pytest.mark.parametrize("value", ["0", "65536", "http", "-5"])
def test_bad_ports(tmp_path: Path, value: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "GH_API_PORT": value, "GH_WORKER_PORT": value}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, "GH_API_PORT")
    assert _problems_for(info.value.problems, "GH_WORKER_PORT")


def test_relative_ghosthands_dir_refused(tmp_path: Path) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "GHOSTHANDS_DIR": "opt/ghosthands"}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, "GHOSTHANDS_DIR")


def test_bad_registry_and_region(tmp_path: Path) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "ECR_REGISTRY": "https://reg/", "AWS_REGION": "useast1"}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, "ECR_REGISTRY")
    assert _problems_for(info.value.problems, "AWS_REGION")


# --- needs ----------------------------------------------------------------------------------


def test_build_keys_do_not_ask_for_host_settings(tmp_path: Path) -> None:
    environ = {
        "ECR_REGISTRY": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        # all of these are broken or absent but a build does not need them
        "EC2_HOST": "not a host!!",
        "EC2_KEY": str(tmp_path / "missing.pem"),
        "HEALTH_TIMEOUT": "soon",
        "GH_ENVIRONMENT": "prod",
    }
    cfg = load_config(needs=BUILD_KEYS, environ=environ, cwd=tmp_path)
    assert cfg.registry == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert cfg.repository == "ghosthands"  # default
    # reading a key the command did not declare checks it then: an error naming it, not a crash
    with pytest.raises(ConfigError, match="EC2_HOST"):
        cfg.hosts  # noqa: B018
    with pytest.raises(ConfigError, match="HEALTH_TIMEOUT"):
        cfg.health_timeout  # noqa: B018


def test_build_keys_still_validate_what_build_needs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(needs=BUILD_KEYS, environ={"EC2_HOST": "ubuntu@10.0.0.5"}, cwd=tmp_path)
    assert [p.split(" ")[0] for p in info.value.problems] == ["ECR_REGISTRY"]


def test_push_keys_need_a_region_but_no_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(needs=PUSH_KEYS, environ={"ECR_REGISTRY": "r.example.com"}, cwd=tmp_path)
    assert _problems_for(info.value.problems, "AWS_REGION")
    assert not _problems_for(info.value.problems, "EC2_")


# --- the env file ---------------------------------------------------------------------------


def test_missing_explicit_env_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    with pytest.raises(ConfigError) as info:
        load_config(needs=BUILD_KEYS, env_file=missing, environ={"ECR_REGISTRY": "r.example.com"}, cwd=tmp_path)
    assert str(missing) in info.value.message
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert info.value.hint


def test_env_file_given_as_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(needs=BUILD_KEYS, env_file=tmp_path, environ={"ECR_REGISTRY": "r.example.com"}, cwd=tmp_path)


def test_reading_the_file_does_not_touch_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in config.KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("GHDEPLOY_TEST_SENTINEL", raising=False)
    _write_env(
        tmp_path,
        "ECR_REGISTRY=file.example.com\nAWS_REGION=us-west-2\nGHDEPLOY_TEST_SENTINEL=1\nIMAGE_TAG=v9\n",
    )
    before = dict(os.environ)
    cfg = load_config(needs=PUSH_KEYS, cwd=tmp_path)  # environ defaults to os.environ
    assert cfg.registry == "file.example.com"
    assert dict(os.environ) == before
    assert "ECR_REGISTRY" not in os.environ
    assert "GHDEPLOY_TEST_SENTINEL" not in os.environ


def test_process_environment_used_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in config.KEYS:
        monkeypatch.delenv(key, raising=False)
    _write_env(tmp_path, "ECR_REGISTRY=file.example.com\n")
    monkeypatch.setenv("ECR_REGISTRY", "env.example.com")
    cfg = load_config(needs=BUILD_KEYS, cwd=tmp_path)
    assert cfg.registry == "env.example.com"


def test_text_of_a_key_nobody_asked_for_raises_keyerror(tmp_path: Path) -> None:
    cfg = load_config(needs=BUILD_KEYS, environ={"ECR_REGISTRY": "r.example.com"}, cwd=tmp_path)
    with pytest.raises(KeyError):
        cfg.text("EC2_KEY")


# --- .env.deploy.example -------------------------------------------------------------------


def test_env_deploy_example_documents_every_key() -> None:
    example = REPO_ROOT / ".env.deploy.example"
    assert example.is_file(), f"{example} is missing (.env.deploy.example documents every key)"
    text = example.read_text()
    undocumented = [key for key in config.KEYS if not re.search(rf"(?<![A-Z0-9_]){key}(?![A-Z0-9_])", text)]
    assert not undocumented, f".env.deploy.example does not mention {undocumented}"


# --- input the issue found accepted or crashing (issue 9) ---------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ECR_REGISTRY", "r.example.com\n"),
        ("ECR_REPOSITORY", "ghosthands\n"),
        ("IMAGE_TAG", "v1\n"),
        ("AWS_REGION", "us-east-1\n"),
        ("ASG_NAME", "group\n"),
        ("EC2_HOST", "ubuntu\n@h1"),
        ("SSH_USER", "ec2-user\n"),
    ],
)
def test_a_trailing_newline_is_refused(tmp_path: Path, key: str, value: str) -> None:
    """`$` matches before a final newline; fullmatch does not."""
    environ = {**_valid_deploy_environ(tmp_path), key: value}
    if key in ("ASG_NAME", "SSH_USER"):
        environ.pop("EC2_HOST")
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, key), info.value.problems


@pytest.mark.parametrize("key", ["GH_API_PORT", "GH_WORKER_PORT", "HEALTH_TIMEOUT", "DRAIN_TIMEOUT", "STOP_TIMEOUT"])
@pytest.mark.parametrize("value", ["¹", "³", "٣", "\uff11\uff12", " 30", "+30", "3_0"])
def test_numbers_are_ascii_digits_only(tmp_path: Path, key: str, value: str) -> None:
    """str.isdigit() takes superscripts (then int() raised a traceback); int() takes other scripts."""
    environ = {**_valid_deploy_environ(tmp_path), key: value}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    (problem,) = _problems_for(info.value.problems, key)
    assert "whole number" in problem


@pytest.mark.parametrize(
    "value",
    [".", "--help", "-r.example.com", "r.example.com:99999", "r.example.com:0", "r.example.com:", "reg", "a..b"],
)
def test_bad_registry_hosts(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(needs=BUILD_KEYS, environ={"ECR_REGISTRY": value}, cwd=tmp_path)
    assert _problems_for(info.value.problems, "ECR_REGISTRY"), info.value.problems


@pytest.mark.parametrize("value", ["r.example.com", "10.88.0.1:5131", "localhost:5000", "localhost", "reg:443"])
def test_good_registry_hosts(tmp_path: Path, value: str) -> None:
    assert load_config(needs=BUILD_KEYS, environ={"ECR_REGISTRY": value}, cwd=tmp_path).registry == value


@pytest.mark.parametrize("value", ["x;rm -rf /", "a@b", "-oProxyCommand=x", "", "1user", "ü"])
def test_bad_ssh_user(tmp_path: Path, value: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "ASG_NAME": "group", "SSH_USER": value}
    environ.pop("EC2_HOST")
    if not value:  # an empty value means unset: the default applies
        assert load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path).ssh_user == "ec2-user"
        return
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, "SSH_USER"), info.value.problems


@pytest.mark.parametrize("value", ["h1,h1:22", "root@h1,h1", "root@h1:22,ubuntu@h1"])
def test_the_same_host_twice_is_refused(tmp_path: Path, value: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "EC2_HOST": value}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    (problem,) = _problems_for(info.value.problems, "EC2_HOST")
    assert "twice" in problem


def test_an_explicit_ssh_config_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "SSH_CONFIG": str(tmp_path / "no-such-config")}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    (problem,) = _problems_for(info.value.problems, "SSH_CONFIG")
    assert "no such file" in problem


def test_the_default_ssh_config_may_be_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(needs=DEPLOY_KEYS, environ=_valid_deploy_environ(tmp_path), cwd=tmp_path)
    assert cfg.ssh_config_in_use is None
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host *\n")
    cfg = load_config(needs=DEPLOY_KEYS, environ=_valid_deploy_environ(tmp_path), cwd=tmp_path)
    assert cfg.ssh_config_in_use == tmp_path / ".ssh" / "config"


def test_api_and_worker_on_the_same_port_is_refused(tmp_path: Path) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "GH_API_PORT": "3100", "GH_WORKER_PORT": "3100"}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, "GH_API_PORT and GH_WORKER_PORT"), info.value.problems


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HEALTH_TIMEOUT", "0"),
        ("HEALTH_TIMEOUT", "3601"),
        ("DRAIN_TIMEOUT", "86401"),
        ("STOP_TIMEOUT", "3601"),
        ("STOP_TIMEOUT", "99999999999"),
    ],
)
def test_nonsense_ranges_are_refused(tmp_path: Path, key: str, value: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), key: value}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    (problem,) = _problems_for(info.value.problems, key)
    assert "range" in problem or "whole number" in problem


def test_zero_drain_and_stop_timeouts_are_allowed(tmp_path: Path) -> None:
    """0 means: do not wait for the drain / kill at once. Both are real choices, unlike a 0 health timeout."""
    environ = {**_valid_deploy_environ(tmp_path), "DRAIN_TIMEOUT": "0", "STOP_TIMEOUT": "0"}
    cfg = load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert (cfg.drain_timeout, cfg.stop_timeout) == (0, 0)


@pytest.mark.parametrize("value", ["/", "//", "/opt/../etc", "/opt/gh\nx"])
def test_bad_ghosthands_dir(tmp_path: Path, value: str) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "GHOSTHANDS_DIR": value}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    assert _problems_for(info.value.problems, "GHOSTHANDS_DIR")


def test_a_key_file_that_is_a_directory_says_so(tmp_path: Path) -> None:
    environ = {**_valid_deploy_environ(tmp_path), "EC2_KEY": str(tmp_path)}
    with pytest.raises(ConfigError) as info:
        load_config(needs=DEPLOY_KEYS, environ=environ, cwd=tmp_path)
    (problem,) = _problems_for(info.value.problems, "EC2_KEY")
    assert "directory" in problem


def test_env_file_directory_is_reported_as_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(needs=BUILD_KEYS, env_file=tmp_path, environ={"ECR_REGISTRY": "r.example.com"}, cwd=tmp_path)
    assert "is a directory" in info.value.message
    assert "--env-file" in info.value.message


# --- a value from a flag is reported as that flag ----------------------------------------------


@pytest.mark.parametrize("flag", ["--tag", "--to"])
def test_a_bad_flag_value_names_the_flag(tmp_path: Path, flag: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            needs=BUILD_KEYS,
            environ={"ECR_REGISTRY": "r.example.com"},
            overrides={"IMAGE_TAG": "v1\n"},
            flag_names={"IMAGE_TAG": flag},
            cwd=tmp_path,
        )
    (problem,) = info.value.problems
    assert problem.startswith(f"{flag} 'v1\\n'"), problem
    assert "IMAGE_TAG" not in problem
    assert info.value.hint and ".env.deploy" not in info.value.hint and "flag" in info.value.hint


def test_an_empty_flag_value_is_a_bad_value_not_an_absent_flag(tmp_path: Path) -> None:
    """`rollback --to ''` must not quietly become a rollback to the previous release."""
    with pytest.raises(ConfigError) as info:
        load_config(needs=[], environ={}, overrides={"IMAGE_TAG": ""}, flag_names={"IMAGE_TAG": "--to"}, cwd=tmp_path)
    assert info.value.problems[0].startswith("--to ''")


def test_mypy_rejects_a_misspelt_key(tmp_path: Path) -> None:
    """The point of the typed object: a typo is found at check time, not at run time."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ghdeploy.config import Config\n\n\n"
        "def port(c: Config) -> int:\n    return c.gh_api_prot\n\n\n"
        "def key(c: Config) -> str:\n    return c.text('GH_API_PROT')\n\n\n"
        "def ok(c: Config) -> int:\n    return c.gh_api_port + c.health_timeout\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(probe)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 'has no attribute "gh_api_prot"' in result.stdout, result.stdout
    assert "Literal['GH_API_PROT']" in result.stdout, result.stdout
    assert "probe.py:13" not in result.stdout, result.stdout


def test_a_misspelt_or_misplaced_key_in_the_env_file_is_warned_about(tmp_path: Path) -> None:
    _write_env(
        tmp_path,
        "EC2_HOSTS=ubuntu@h1\nECR_REGISTRY=r.example.com\nAWS_PROFILE=prod\nAWS_REGION=us-east-1\nFOO_BAR=1\n",
    )
    cfg = load_config(needs=BUILD_KEYS, environ={}, cwd=tmp_path)
    text = "\n".join(cfg.warnings)
    assert "EC2_HOSTS is not a ghdeploy key, ignored (did you mean EC2_HOST?)" in text
    assert "AWS_PROFILE is ignored there: it is read from the process environment" in text
    assert "FOO_BAR is not a ghdeploy key, ignored" in text and "FOO_BAR is not a ghdeploy key, ignored (" not in text
    assert "ECR_REGISTRY" not in text and "AWS_REGION" not in text  # declared keys
    # the same value exported as well (systemd's EnvironmentFile): nothing to say
    cfg = load_config(needs=BUILD_KEYS, environ={"AWS_PROFILE": "prod"}, cwd=tmp_path)
    assert not any("AWS_PROFILE" in w for w in cfg.warnings)
