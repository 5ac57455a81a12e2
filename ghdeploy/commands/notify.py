"""`ghdeploy notify`: CI's side of the webhook, one line instead of a hand-rolled curl.

Builds CI's deploy_ready payload (plus `sent_at`), signs it with DEPLOY_WEBHOOK_SECRET and POSTs
it; with --wait, follows the deploy through GET /api/v1/deploys/{id} until it ends. Needs only
httpx (a core dependency), never the server extra.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ghdeploy.config import Config
from ghdeploy.errors import ConfigError, LocalToolError, OperationFailed
from ghdeploy.images import validate_tag
from ghdeploy.progress import Reporter

if TYPE_CHECKING:
    import httpx

WEBHOOK_PATH = "/api/v1/webhooks/ghosthands/deploy"
FINAL = ("succeeded", "rolled back", "failed", "superseded", "interrupted")
POLL_FIRST, POLL_MAX = 0.25, 2.0
UNREACHABLE_FOR = 120.0  # seconds --wait tolerates a receiver that does not answer (restarting)


@dataclass
class NotifyOutcome:
    status_code: int | None
    answer: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # the receiver's reason when it refused
    tag: str = ""
    deploy: dict[str, Any] | None = None  # the final record, with --wait

    @property
    def accepted(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def deploy_id(self) -> int | None:
        value = self.answer.get("id")
        return value if isinstance(value, int) else None

    @property
    def ok(self) -> bool:
        if not self.accepted:
            return False
        return self.deploy is None or self.deploy.get("status") == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status_code": self.status_code,
            "id": self.deploy_id,
            "status": self.answer.get("status"),
            "reason": self.reason,
            "tag": self.tag,
            "deploy": self.deploy,
        }


def webhook_url(url: str) -> str:
    """--url may be the receiver's base URL or the full webhook URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--url {url!r} is not an http:// or https:// URL", "e.g. --url https://deploy.example.com")
    if parts.path.rstrip("/").endswith(WEBHOOK_PATH):
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + WEBHOOK_PATH, parts.query, ""))


def deploy_url(webhook: str, deploy_id: int) -> str:
    base = webhook[: webhook.rindex(WEBHOOK_PATH)]
    return f"{base}/api/v1/deploys/{deploy_id}"


def github_run_url(environ: Mapping[str, str]) -> str:
    """The CI run's URL from GitHub Actions' variables, when there are any."""
    server, repo, run = (environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else ""


def commit_info(cwd: Path, environ: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """(full SHA, short SHA, commit message) of HEAD; from GITHUB_SHA outside a checkout."""
    import subprocess

    proc = subprocess.run(
        ["git", "log", "-1", "--format=%H%n%h%n%B"], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode == 0 and proc.stdout.strip():
        sha, short, message = [*proc.stdout.split("\n", 2), "", ""][:3]
        return sha.strip(), short.strip(), message.strip()
    sha = (os.environ if environ is None else environ).get("GITHUB_SHA", "").strip()
    if sha:
        return sha, sha[:7], ""
    raise LocalToolError(
        f"{cwd} is not a git checkout and GITHUB_SHA is not set: no commit to name",
        "run notify from the app's checkout (as CI does)",
    )


def _client(timeout: float) -> httpx.Client:
    import ssl

    import httpx

    # OpenSSL's default paths honour SSL_CERT_FILE, so a receiver behind a private CA works.
    return httpx.Client(timeout=timeout, verify=ssl.create_default_context(), follow_redirects=False)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return (response.text or response.reason_phrase or "").strip()[:300] or f"HTTP {response.status_code}"


def notify(
    config: Config,
    cwd: Path,
    reporter: Reporter,
    *,
    url: str,
    secret: str,
    token: str | None,
    tag: str | None,
    environment: str | None,
    message: str | None,
    run_url: str | None,
    wait: bool,
    sleep: Callable[[float], None] = time.sleep,
    environ: Mapping[str, str] | None = None,
) -> NotifyOutcome:
    import httpx

    from ghdeploy.server import payload
    from ghdeploy.server.auth import SIGNATURE_HEADER, sign

    target = webhook_url(url)
    if wait and not token:
        raise ConfigError("--wait needs DEPLOY_API_TOKEN (to read the deploy)", "set it in the environment")
    environ = os.environ if environ is None else environ  # CI's GITHUB_* variables
    sha, short, commit_message = commit_info(cwd, environ)
    chosen = tag or config.get("IMAGE_TAG") or short
    validate_tag(chosen, "--tag" if tag else "IMAGE_TAG" if config.get("IMAGE_TAG") else "HEAD's short SHA")
    env_name = environment or config.text("GH_ENVIRONMENT")
    body = payload.build(
        registry=config.registry,
        repository=config.repository,
        tag=chosen,
        commit_sha=sha,
        commit_message=message if message is not None else commit_message,
        environment=env_name,
        run_url=run_url if run_url is not None else github_run_url(environ),
    )
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        "X-GH-Event": payload.HEADER_EVENT,
        "X-GH-Environment": env_name,
    }
    reporter.step(None, f"sending deploy_ready for {config.repository}:{chosen} ({env_name})")
    try:
        with _client(30.0) as client:
            response = client.post(target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise OperationFailed(
            f"could not reach the receiver at {target}: {type(exc).__name__}: {exc}",
            "check --url and that `ghdeploy serve` runs there",
        ) from None
    outcome = NotifyOutcome(status_code=response.status_code, tag=chosen)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    outcome.answer = answer if isinstance(answer, dict) else {}
    if not outcome.accepted:
        outcome.reason = _reason(response)
        return outcome
    if wait and outcome.deploy_id is not None:
        assert token is not None
        outcome.deploy = follow(deploy_url(target, outcome.deploy_id), token, reporter, sleep)
    return outcome


def follow(url: str, token: str, reporter: Reporter, sleep: Callable[[float], None]) -> dict[str, Any]:
    """Poll the deploy until it ends, turning its recorded progress into reporter steps."""
    import httpx

    shown: dict[str, str] = {}
    status_seen = None
    interval = POLL_FIRST
    unreachable_since: float | None = None
    with _client(10.0) as client:
        while True:
            try:
                response = client.get(url, headers={"Authorization": f"Bearer {token}"})
                unreachable_since = None
            except httpx.HTTPError as exc:
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since > UNREACHABLE_FOR:
                    raise OperationFailed(f"the receiver stopped answering ({exc})", f"look at {url}") from None
                sleep(interval)
                continue
            if response.status_code != 200:
                raise OperationFailed(
                    f"reading the deploy answered {response.status_code}: {_reason(response)}",
                    "check DEPLOY_API_TOKEN" if response.status_code == 401 else None,
                )
            record = response.json()
            if record.get("status") != status_seen:
                status_seen = record.get("status")
                reporter.step(None, f"deploy #{record.get('id')}: {status_seen}")
            for host, step in (record.get("progress") or {}).items():
                if shown.get(host) != step:
                    shown[host] = step
                    reporter.step(host or None, step)
            if status_seen in FINAL:
                return dict(record)
            sleep(interval)
            interval = min(interval * 1.5, POLL_MAX)
