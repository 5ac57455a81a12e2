"""The ECR token goes only to the registry ECR names with it, unless the operator's shell says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghdeploy.config import load_config
from ghdeploy.errors import ConfigError
from ghdeploy.registry import check_endpoint

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_the_registry_ecr_names_is_accepted() -> None:
    check_endpoint(ECR, f"https://{ECR}", environ={})
    check_endpoint(ECR.upper(), f"https://{ECR}:443", environ={})


def test_another_registry_is_refused_without_the_override() -> None:
    with pytest.raises(ConfigError, match="not the registry this ECR token is for") as info:
        check_endpoint("evil.example.com", f"https://{ECR}", environ={})
    assert info.value.hint is not None and f"ECR_REGISTRY={ECR}" in info.value.hint
    with pytest.raises(ConfigError):
        check_endpoint("10.88.0.1:5131", f"https://{ECR}", environ={"ECR_REGISTRY_OVERRIDE": "0"})
    check_endpoint("10.88.0.1:5131", f"https://{ECR}", environ={"ECR_REGISTRY_OVERRIDE": "1"})


def test_the_override_is_refused_in_an_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env.deploy").write_text(f"ECR_REGISTRY={ECR}\nECR_REGISTRY_OVERRIDE=1\n")
    with pytest.raises(ConfigError) as info:
        load_config(command="push", cwd=tmp_path, environ={"AWS_REGION": "us-east-1"})
    assert any("ECR_REGISTRY_OVERRIDE is set in" in p and "process environment" in p for p in info.value.problems)
    config = load_config(
        command="push",
        cwd=tmp_path / "none",
        environ={"ECR_REGISTRY": ECR, "AWS_REGION": "us-east-1", "ECR_REGISTRY_OVERRIDE": "1"},
    )
    assert config.ecr_registry_override == "1"
