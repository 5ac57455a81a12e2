"""The registry's HTTP API V2 (httpx): digests, tags, moving a tag, an image's platforms and size.

The ECR token it sends comes from aws/ecr.py (re-exported here: the registry seam's one import).
httpx is imported inside functions so that `ghdeploy --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ghdeploy.aws.ecr import RegistryAuth, check_endpoint, check_repository, get_login, login_once, pushed_at
from ghdeploy.aws.errors import translate_aws_error
from ghdeploy.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    import httpx

    from ghdeploy.hostfit import PlatformImage

__all__ = [
    "RegistryAuth",
    "check_endpoint",
    "check_repository",
    "get_login",
    "image_platforms",
    "list_tags",
    "login_once",
    "require_digest",
    "resolve_digest",
    "tag_manifest",
    "translate_aws_error",
]

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


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


def list_tags(auth: RegistryAuth, repository: str, limit: int = 10000) -> list[str]:
    """Every tag of `repository` (/v2/REPO/tags/list, following the Link header's pages)."""
    import httpx

    tags: list[str] = []
    url: str | None = f"https://{auth.registry}/v2/{repository}/tags/list?n=1000"
    try:
        with http_client() as client:
            while url and len(tags) < limit:
                response = client.get(url, auth=(auth.username, auth.password))
                if response.status_code == 404:
                    return tags
                if response.status_code != 200:
                    raise RegistryError(f"registry {auth.registry} answered HTTP {response.status_code} listing tags")
                tags += response.json().get("tags") or []
                following = response.links.get("next", {}).get("url")
                url = str(response.url.join(following)) if following else None
    except (httpx.HTTPError, ValueError) as exc:
        raise RegistryError(f"registry {auth.registry}: cannot list tags: {exc}") from None
    return tags


def _pushed_at(auth: RegistryAuth, repository: str, tags: list[str]) -> dict[str, str]:
    """When each tag's image was created (its config's `created`): two requests a tag, 8 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def created(client: httpx.Client, tag: str) -> str | None:
        try:
            manifest = client.get(
                f"https://{auth.registry}/v2/{repository}/manifests/{tag}",
                headers={"Accept": MANIFEST_TYPES},
                auth=(auth.username, auth.password),
            ).json()
            config_digest = (manifest.get("config") or {}).get("digest")
            if not config_digest:  # an index (multi-platform): no single created time
                return None
            blob = client.get(
                f"https://{auth.registry}/v2/{repository}/blobs/{config_digest}",
                auth=(auth.username, auth.password),
                follow_redirects=True,
            ).json()
        except (httpx.HTTPError, ValueError):
            return None
        when = blob.get("created")
        return when if isinstance(when, str) else None

    with http_client() as client, ThreadPoolExecutor(max_workers=8) as pool:
        times = list(pool.map(lambda tag: created(client, tag), tags))
    return {tag: when for tag, when in zip(tags, times, strict=True) if when}


# A registry without ECR's DescribeImages has no dates in its tag list: each tag's date costs two
# requests (manifest, config), ~40 ms a tag on the testbed (98 tags took ~4 s). Only this many are
# read: all of them in a small repository, else only the closest matches.
DATED_TAGS = 8


def tag_suggestions(auth: RegistryAuth, repository: str, tag: str, region: str | None = None) -> str:
    """`closest: ...; newest: ...` for a tag that is not there, so a typo is obvious ('' if nothing helps).

    Dates come from ECR's DescribeImages (one paginated call for every tag); a plain registry's
    are read for at most DATED_TAGS tags, so the message costs a fraction of a second at any size.
    """
    import difflib

    try:
        tags = list_tags(auth, repository)
    except RegistryError:
        return ""
    if not tags:
        return f"{repository} has no tags yet"
    close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.5)
    close += [t for t in tags if t.startswith(tag) and t not in close][: 3 - len(close)]
    candidates = [t for t in tags if t != "latest"]
    created = {t: when for t, when in (pushed_at(region, repository) if region else {}).items() if t in tags}
    every_date = bool(created)
    if not created:
        every_date = len(candidates) <= DATED_TAGS
        created = _pushed_at(auth, repository, candidates if every_date else [t for t in close if t != "latest"])

    def dated(t: str) -> str:
        return f"{t} ({created[t][:16].replace('T', ' ')})" if t in created else t

    parts = [f"closest: {', '.join(dated(t) for t in close)}"] if close else []
    if every_date:  # "newest" only when every tag's date is known
        newest = sorted((t for t in created if t != "latest"), key=lambda t: created[t], reverse=True)[:5]
        if newest:
            parts.append("newest: " + ", ".join(dated(t) for t in newest))
    parts.append(f"{len(tags)} tags in all")
    return "; ".join(parts)


def require_digest(
    auth: RegistryAuth, repository: str, tag: str, source: str = "--tag", region: str | None = None
) -> str:
    """The digest of a tag that must exist; `source` names where the tag came from (`--to`, IMAGE_TAG)."""
    digest = resolve_digest(auth, repository, tag)
    if digest is None:
        known = tag_suggestions(auth, repository, tag, region)
        hint = (
            f"name a tag that is in the registry with {source}"
            if source.startswith("--to")
            else "push it first (`ghdeploy push --tag ...`), or run `ghdeploy deploy` without --deploy-only"
        )
        raise ConfigError(
            f"{source} {tag!r}: no such tag in {auth.registry}/{repository}" + (f" ({known})" if known else ""), hint
        )
    return digest


# --- platform and size of an image (preflight's platform and disk checks) ---------------------

_INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


def _get_json(auth: RegistryAuth, path: str, what: str, accept: str | None = None) -> tuple[dict[str, Any], str]:
    """GET https://REGISTRY/v2/PATH as JSON (redirects followed: ECR serves blobs from S3)."""
    import httpx

    url = f"https://{auth.registry}/v2/{path}"
    headers = {"Accept": accept} if accept else {}
    try:
        with http_client() as client:
            # httpx drops the Authorization header on a redirect to another host (ECR -> S3).
            response = client.get(url, headers=headers, auth=(auth.username, auth.password), follow_redirects=True)
    except httpx.HTTPError as exc:
        raise RegistryError(
            f"registry {auth.registry}: reading {what}: {exc}", "check ECR_REGISTRY and the network"
        ) from None
    if response.status_code != 200:
        raise RegistryError(f"registry {auth.registry} answered HTTP {response.status_code} for {what}")
    try:
        data = response.json()
    except ValueError:
        raise RegistryError(f"registry {auth.registry} sent unreadable JSON for {what}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"registry {auth.registry} sent unexpected JSON for {what}")
    return data, response.headers.get("Content-Type", "").split(";")[0].strip()


def image_platforms(auth: RegistryAuth, repository: str, reference: str) -> list[PlatformImage]:
    """Each platform `repository@reference` is built for, with its compressed size.

    A manifest list / OCI index names its platforms (attestation entries, `unknown/unknown`, are
    skipped); a single manifest's platform is in its config blob (`os`, `architecture`, `variant`).
    """
    from ghdeploy.hostfit import PlatformImage

    manifest, media_type = _get_json(
        auth, f"{repository}/manifests/{reference}", f"{repository}@{reference}", MANIFEST_TYPES
    )
    if media_type in _INDEX_TYPES or "manifests" in manifest:
        images = []
        for entry in manifest.get("manifests") or []:
            platform = entry.get("platform") or {}
            if platform.get("os") in (None, "unknown") or platform.get("architecture") in (None, "unknown"):
                continue
            child, _ = _get_json(
                auth, f"{repository}/manifests/{entry['digest']}", f"{repository}@{entry['digest']}", MANIFEST_TYPES
            )
            images.append(
                PlatformImage(platform["os"], platform["architecture"], platform.get("variant"), _compressed(child))
            )
        return images
    config_digest = (manifest.get("config") or {}).get("digest")
    if not config_digest:
        raise RegistryError(f"registry {auth.registry}: {repository}@{reference} has no config blob")
    config, _ = _get_json(auth, f"{repository}/blobs/{config_digest}", f"the config of {repository}@{reference}")
    return [
        PlatformImage(
            str(config.get("os") or "linux"),
            str(config.get("architecture") or "unknown"),
            config.get("variant"),
            _compressed(manifest),
        )
    ]


def _compressed(manifest: dict[str, Any]) -> int:
    layers = manifest.get("layers") or []
    return int((manifest.get("config") or {}).get("size") or 0) + sum(int(layer.get("size") or 0) for layer in layers)
