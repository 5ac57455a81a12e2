"""ECR through boto3: the authorization token (one login per process and registry), where the
token may be sent, the repository's existence and its push times.

boto3/botocore are imported inside functions so that `ghdeploy --help` stays fast.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ghdeploy.aws.errors import translate_aws_error
from ghdeploy.errors import ConfigError, RegistryError


@dataclass(frozen=True)
class RegistryAuth:
    registry: str
    username: str
    password: str
    expires_at: float | None = None  # epoch seconds ECR gives for the token (12 h), when known

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log
        return f"RegistryAuth(registry={self.registry!r}, username={self.username!r}, password=<hidden>)"


def client(region: str) -> Any:
    import boto3

    return boto3.client("ecr", region_name=region)


def get_login(region: str, registry: str) -> RegistryAuth:
    """An ECR authorization token for `registry`, decoded into basic-auth user and password."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client(region).get_authorization_token()
    except (BotoCoreError, ClientError) as exc:
        raise translate_aws_error(exc, "ECR login") from None
    data = response.get("authorizationData") or []
    if not data:
        raise RegistryError("ECR returned no authorization data", "check the region and your ECR permissions")
    check_endpoint(registry, str(data[0].get("proxyEndpoint") or ""))
    decoded = base64.b64decode(data[0]["authorizationToken"]).decode()
    username, _, password = decoded.partition(":")
    expires = data[0].get("expiresAt")
    return RegistryAuth(
        registry=registry,
        username=username,
        password=password,
        expires_at=expires.timestamp() if hasattr(expires, "timestamp") else None,
    )


# One ECR login per process and registry: a deploy's push, preflight and every host's pull
# share it (GetAuthorizationToken once per run, not per step or per host). A long-running
# process (serve, agent) gets a new token once this one has less than an hour left.
_LOGINS: dict[tuple[str, str], RegistryAuth] = {}
_LOGINS_LOCK = threading.Lock()
_REFRESH_BEFORE = 3600.0


def login_once(region: str, registry: str, now: Callable[[], float] = time.time) -> RegistryAuth:
    """get_login, reused for as long as the token stays valid for more than an hour."""
    with _LOGINS_LOCK:
        auth = _LOGINS.get((region, registry))
        if auth is not None and auth.expires_at is not None and auth.expires_at - now() > _REFRESH_BEFORE:
            return auth
        auth = get_login(region, registry)
        _LOGINS[(region, registry)] = auth
        return auth


OVERRIDE_KEY = "ECR_REGISTRY_OVERRIDE"


def check_endpoint(registry: str, proxy_endpoint: str, environ: Mapping[str, str] | None = None) -> None:
    """The ECR token goes only to the registry ECR issued it for: the host of its proxyEndpoint.

    A stand-in registry (a test bed, a pull-through mirror) is allowed only with
    ECR_REGISTRY_OVERRIDE=1 in the process environment (config refuses it in an env file), so a
    committed .env.deploy naming another ECR_REGISTRY cannot send the operator's token there.
    """
    from urllib.parse import urlsplit

    expected = (urlsplit(proxy_endpoint).netloc or proxy_endpoint).lower()
    if expected.endswith(":443"):
        expected = expected[: -len(":443")]
    if registry.lower() == expected:
        return
    if (os.environ if environ is None else environ).get(OVERRIDE_KEY) == "1":
        return
    raise ConfigError(
        f"ECR_REGISTRY={registry} is not the registry this ECR token is for ({expected or 'none given'}): "
        "the token is not sent there",
        (f"set ECR_REGISTRY={expected}" if expected else "check AWS_REGION and the account of your credentials")
        + f"; for a stand-in registry on purpose, `export {OVERRIDE_KEY}=1` in this shell",
    )


def check_repository(region: str, repository: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(region).describe_repositories(repositoryNames=[repository])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
            raise RegistryError(
                f"ECR repository {repository!r} does not exist in {region}",
                f"create it (aws ecr create-repository --repository-name {repository} --region {region}) "
                "or fix ECR_REPOSITORY / AWS_REGION",
            ) from None
        raise translate_aws_error(exc, "ECR") from None
    except BotoCoreError as exc:
        raise translate_aws_error(exc, "ECR") from None


def pushed_at(region: str, repository: str) -> dict[str, str]:
    """ECR's own push times of every tag (DescribeImages); {} when the API has none (a plain registry)."""
    from botocore.exceptions import BotoCoreError, ClientError

    pushed: dict[str, str] = {}
    try:
        pages = client(region).get_paginator("describe_images").paginate(repositoryName=repository)
        for page in pages:
            for image in page.get("imageDetails", []):
                when = image.get("imagePushedAt")
                for tag in image.get("imageTags") or []:
                    if when is not None:
                        pushed[tag] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    except (BotoCoreError, ClientError):
        return {}
    return pushed
