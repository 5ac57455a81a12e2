"""ECR: the authorization token (boto3) and the registry's HTTP API V2 (httpx).

boto3/botocore/httpx are imported inside functions so that `ghdeploy --help` stays fast.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    import httpx

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@dataclass(frozen=True)
class RegistryAuth:
    registry: str
    username: str
    password: str
    expires_at: float | None = None  # epoch seconds ECR gives for the token (12 h), when known

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log
        return f"RegistryAuth(registry={self.registry!r}, username={self.username!r}, password=<hidden>)"


def _ecr(region: str) -> Any:
    import boto3

    return boto3.client("ecr", region_name=region)


def translate_aws_error(exc: Exception, what: str) -> RegistryError:
    """Turn a botocore exception into one line with what to do."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return RegistryError(
            f"{what}: no AWS credentials found",
            "log in (`aws sso login`), or set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, bx.TokenRetrievalError | bx.UnauthorizedSSOTokenError | bx.SSOTokenLoadError):
        return RegistryError(f"{what}: the AWS SSO session has expired", "run `aws sso login` and try again")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        return RegistryError(
            f"{what}: cannot reach the AWS endpoint ({exc})", "check the network, AWS_REGION and AWS_ENDPOINT_URL"
        )
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in ("ExpiredTokenException", "ExpiredToken", "RequestExpired"):
            return RegistryError(
                f"{what}: the AWS credentials have expired", "refresh them (`aws sso login` or new keys) and try again"
            )
        if code in (
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
        ):
            return RegistryError(
                f"{what}: the AWS credentials were rejected ({code})", "check AWS_PROFILE / the access keys"
            )
        if code in ("AccessDeniedException", "AccessDenied"):
            return RegistryError(
                f"{what}: access denied ({message})", "ask for ECR push/pull rights on this repository"
            )
        return RegistryError(f"{what}: AWS error {code}: {message}")
    if isinstance(exc, bx.BotoCoreError):
        return RegistryError(f"{what}: {exc}")
    raise exc


def get_login(region: str, registry: str) -> RegistryAuth:
    """An ECR authorization token for `registry`, decoded into basic-auth user and password."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _ecr(region).get_authorization_token()
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
        _ecr(region).describe_repositories(repositoryNames=[repository])
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


def http_client(timeout: float = 10.0) -> httpx.Client:
    """An httpx client that trusts what OpenSSL trusts (so SSL_CERT_FILE and private CAs work).

    httpx uses certifi by default, which ignores SSL_CERT_FILE; ssl.create_default_context()
    honours it.
    """
    import ssl

    import httpx

    return httpx.Client(verify=ssl.create_default_context(), timeout=timeout)


def _manifest_request(
    auth: RegistryAuth, method: str, repository: str, reference: str, **kwargs: Any
) -> httpx.Response:
    """One request to /v2/REPO/manifests/REF with the ECR token, errors translated."""
    import httpx

    url = f"https://{auth.registry}/v2/{repository}/manifests/{reference}"
    headers = {"Accept": MANIFEST_TYPES, **kwargs.pop("headers", {})}
    try:
        with http_client() as client:
            response = client.request(method, url, headers=headers, auth=(auth.username, auth.password), **kwargs)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise RegistryError(
                f"the TLS certificate of {auth.registry} is not trusted",
                "install its CA in the system trust store or point SSL_CERT_FILE at it",
            ) from None
        raise RegistryError(
            f"cannot reach registry {auth.registry}: {exc}", "check ECR_REGISTRY and the network"
        ) from None
    except httpx.HTTPError as exc:
        raise RegistryError(f"registry {auth.registry}: {exc}", "check ECR_REGISTRY and the network") from None
    if response.status_code in (401, 403):
        raise RegistryError(
            f"registry {auth.registry} refused the ECR token (HTTP {response.status_code})",
            "check that ECR_REGISTRY belongs to the account and region of your AWS credentials",
        )
    return response


def resolve_digest(auth: RegistryAuth, repository: str, tag: str) -> str | None:
    """The digest `repository:tag` points at, from the registry's V2 API; None if no such tag."""
    response = _manifest_request(auth, "HEAD", repository, tag)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise RegistryError(f"registry {auth.registry} answered HTTP {response.status_code} for {repository}:{tag}")
    digest = response.headers.get("Docker-Content-Digest")
    if not digest:
        raise RegistryError(f"registry {auth.registry} gave no digest for {repository}:{tag}")
    return digest


def tag_manifest(auth: RegistryAuth, repository: str, digest: str, tag: str) -> str:
    """Point `repository:tag` at the manifest `digest` in the registry itself (as `crane tag` does).

    Unlike `docker tag` + `docker push`, this cannot pick up whatever another build on the same
    engine tagged locally in the meantime. Returns the digest the registry now has for `tag`.
    """
    got = _manifest_request(auth, "GET", repository, digest)
    if got.status_code != 200:
        raise RegistryError(f"registry {auth.registry} answered HTTP {got.status_code} for {repository}@{digest}")
    put = _manifest_request(
        auth,
        "PUT",
        repository,
        tag,
        content=got.content,
        headers={"Content-Type": got.headers.get("Content-Type", "application/octet-stream")},
    )
    if put.status_code not in (200, 201):
        raise RegistryError(
            f"registry {auth.registry} refused to tag {repository}@{digest} as {tag} (HTTP {put.status_code})",
            f"check that the repository allows moving the {tag} tag (ECR: tag immutability off)",
        )
    return put.headers.get("Docker-Content-Digest") or digest


def require_digest(auth: RegistryAuth, repository: str, tag: str) -> str:
    digest = resolve_digest(auth, repository, tag)
    if digest is None:
        raise ConfigError(
            f"tag {tag!r} is not in {auth.registry}/{repository}",
            "push it first (`ghdeploy push --tag ...`), or run `ghdeploy deploy` without --deploy-only",
        )
    return digest
