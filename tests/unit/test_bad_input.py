"""The table of bad input: every config key and every flag with a value, each case through the real
CLI in a subprocess. Each must exit 2, name the key or flag, print no traceback, and touch nothing.

"Touch nothing" is checked from inside the process, not by pointing hosts somewhere harmless: an
audit hook (PEP 578) records any socket connect or name lookup and any process started, and the test
fails on the first one. The run's directories must be left byte for byte as they were, and none of
the network stack (boto3, botocore, paramiko, httpx, ...) may have been imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("boto3", "botocore", "paramiko", "httpx", "httpcore", "starlette", "uvicorn", "sqlalchemy", "rich")

# Runs ghdeploy's real entry point under an audit hook; what it saw goes to $GHDEPLOY_AUDIT.
AUDITED = r"""
import atexit, json, os, sys
seen = []
WATCH = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "subprocess.Popen",
         "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.spawn")
def hook(event, args):
    if event in WATCH:
        seen.append(f"{event} {args!r}"[:300])
sys.addaudithook(hook)
def report():
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    with open(os.environ["GHDEPLOY_AUDIT"], "w") as out:
        json.dump({"events": seen, "heavy": heavy}, out)
HEAVY = set(json.loads(os.environ["GHDEPLOY_HEAVY"]))
atexit.register(report)
sys.argv[0] = "ghdeploy"
from ghdeploy.cli import main
raise SystemExit(main())
"""

SECRET = "s3cr3t-" + "x" * 25
TOKEN = "t0ken-" + "y" * 26


@dataclass(frozen=True)
class Case:
    name: str  # the key or flag the message must name
    argv: tuple[str, ...]
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset the key
    also: str = ""  # more text the message must contain
    hidden: str = ""  # a secret that must not appear anywhere in the output


def key(name: str, value: str | None, *argv: str, also: str = "", **env: str | None) -> Case:
    return Case(name, argv, {name: value, **env}, also)


def flag(name: str, *argv: str, also: str = "", **env: str | None) -> Case:
    return Case(name, argv, dict(env), also)


STATUS = ("status",)
ROLLBACK = ("rollback", "--dry-run")
AGENT = ("agent", "--once")
NOTIFY = ("notify", "--url", "https://deploy.example.com", "--tag", "v1")
SERVE = ("serve",)

CASES: list[Case] = [
    # --- ECR_REGISTRY
    key("ECR_REGISTRY", ".", "push", "--tag", "v1"),
    key("ECR_REGISTRY", "--help", "push", "--tag", "v1"),
    key("ECR_REGISTRY", "-reg.example.com", "push", "--tag", "v1"),
    key("ECR_REGISTRY", "reg.example.com:99999", "push", "--tag", "v1", also="1-65535"),
    key("ECR_REGISTRY", "reg.example.com:0", "build", "--tag", "v1"),
    key("ECR_REGISTRY", "reg.example.com\n", "build", "--tag", "v1"),
    key("ECR_REGISTRY", "https://reg.example.com/", "deploy", "--deploy-only", "--tag", "v1"),
    key("ECR_REGISTRY", None, "push", "--tag", "v1", also="not set"),
    # --- ECR_REPOSITORY
    key("ECR_REPOSITORY", "GhostHands", "push", "--tag", "v1"),
    key("ECR_REPOSITORY", "a//b", "push", "--tag", "v1"),
    key("ECR_REPOSITORY", "-x", *ROLLBACK),
    key("ECR_REPOSITORY", "ghosthands\n", "build", "--tag", "v1"),
    key("ECR_REPOSITORY", "a b", *AGENT),
    # --- AWS_REGION
    key("AWS_REGION", "useast1", "push", "--tag", "v1"),
    key("AWS_REGION", "us-east-1\n", "push", "--tag", "v1"),
    key("AWS_REGION", "US-EAST-1", "deploy", "--deploy-only", "--tag", "v1"),
    key("AWS_REGION", "us-east-\u0661", *AGENT),
    key("AWS_REGION", None, "push", "--tag", "v1", also="not set"),
    # --- EC2_HOST
    key("EC2_HOST", "h1,h1:22", *STATUS, also="twice"),
    key("EC2_HOST", "root@h1,h1", *ROLLBACK, also="twice"),
    key("EC2_HOST", "u@h1:99999", *STATUS),
    key("EC2_HOST", "u@h1:\u00b9", *STATUS),
    key("EC2_HOST", "x;rm -rf /@h1", "hosts"),
    key("EC2_HOST", "2001:db8::1", "hosts"),
    key("EC2_HOST", "bad host", "history"),
    key("EC2_HOST", "u@", "verify", "--expect", "abcdef1"),
    key("EC2_HOST", " , ", "lock", "status"),
    key("EC2_HOST", "ubuntu\n@h1", "hosts"),
    key("EC2_HOST", None, *STATUS, also="not set"),
    # --- ASG_NAME
    key("ASG_NAME", "a b", "hosts", EC2_HOST=None),
    key("ASG_NAME", "group\n", *STATUS, EC2_HOST=None),
    key("ASG_NAME", "group", "hosts", also="both set"),
    key("ASG_NAME", "x" * 256, "hosts", EC2_HOST=None),
    # --- SSH_ADDRESS
    key("SSH_ADDRESS", "internal", "hosts", ASG_NAME="group", EC2_HOST=None),
    key("SSH_ADDRESS", "PUBLIC", *STATUS, ASG_NAME="group", EC2_HOST=None),
    # --- SSH_USER
    key("SSH_USER", "x;rm -rf /", "hosts", ASG_NAME="group", EC2_HOST=None),
    key("SSH_USER", "a@b", "hosts", ASG_NAME="group", EC2_HOST=None),
    key("SSH_USER", "-oProxyCommand=x", *STATUS, ASG_NAME="group", EC2_HOST=None),
    key("SSH_USER", "ec2-user\n", "hosts", ASG_NAME="group", EC2_HOST=None),
    # --- EC2_KEY
    key("EC2_KEY", "/nonexistent/key.pem", *STATUS, also="no such file"),
    key("EC2_KEY", "{tmp}", *ROLLBACK, also="directory"),
    key("EC2_KEY", None, "history", also="not set"),
    # --- SSH_KNOWN_HOSTS
    key("SSH_KNOWN_HOSTS", "{tmp}", *STATUS, also="directory"),
    key("SSH_KNOWN_HOSTS", "{tmp}/kh\x01", *STATUS, also="control"),
    # --- SSH_CONFIG
    key("SSH_CONFIG", "{tmp}/no-such-ssh-config", *STATUS, also="no such file"),
    key("SSH_CONFIG", "{tmp}", *ROLLBACK, also="directory"),
    # --- GHOSTHANDS_DIR
    key("GHOSTHANDS_DIR", "opt/ghosthands", *STATUS, also="absolute"),
    key("GHOSTHANDS_DIR", "/", *ROLLBACK),
    key("GHOSTHANDS_DIR", "/opt/../etc", "history"),
    key("GHOSTHANDS_DIR", "/opt/gh\nx", *AGENT),
    # --- GH_ENVIRONMENT
    key("GH_ENVIRONMENT", "prod", *STATUS, also="production"),
    key("GH_ENVIRONMENT", "Production", *ROLLBACK),
    key("GH_ENVIRONMENT", "staging ", *NOTIFY),
    # --- IMAGE_TAG
    key("IMAGE_TAG", "-x", "push"),
    key("IMAGE_TAG", "v1\n", "build"),
    key("IMAGE_TAG", "a/b", "deploy", "--deploy-only"),
    key("IMAGE_TAG", "a" * 129, "push"),
    # --- GH_API_PORT / GH_WORKER_PORT
    key("GH_API_PORT", "0", *STATUS),
    key("GH_API_PORT", "65536", *ROLLBACK),
    key("GH_API_PORT", "\u00b9", *STATUS, also="whole number"),
    key("GH_API_PORT", "http", *AGENT),
    key("GH_API_PORT", "3101", *STATUS, also="GH_WORKER_PORT"),
    key("GH_WORKER_PORT", "\u00b3", *STATUS, also="whole number"),
    key("GH_WORKER_PORT", "-1", "verify", "--expect", "abcdef1"),
    key("GH_WORKER_PORT", "1e3", *AGENT),
    # --- timeouts
    key("HEALTH_TIMEOUT", "0", *ROLLBACK, also="1-3600"),
    key("HEALTH_TIMEOUT", "3601", "deploy", "--deploy-only", "--tag", "v1"),
    key("HEALTH_TIMEOUT", "soon", *AGENT),
    key("HEALTH_TIMEOUT", "\u0663", *ROLLBACK),
    key("DRAIN_TIMEOUT", "-1", *ROLLBACK),
    key("DRAIN_TIMEOUT", "86401", *ROLLBACK),
    key("DRAIN_TIMEOUT", "1.5", "deploy", "--deploy-only", "--tag", "v1"),
    key("STOP_TIMEOUT", "3601", *ROLLBACK),
    key("STOP_TIMEOUT", "10s", *AGENT),
    # --- where the ECR token may go
    key("ECR_REGISTRY_OVERRIDE", "yes", "deploy", "--deploy-only", "--tag", "v1"),
    key("ECR_REGISTRY_OVERRIDE", "2", *AGENT),
    # --- agent
    key("AGENT_TAG", "-x", *AGENT),
    key("AGENT_TAG", "a b", *AGENT),
    key("AGENT_INTERVAL", "4", *AGENT, also="5-86400"),
    key("AGENT_INTERVAL", "x", *AGENT),
    key("AGENT_FLEET_TABLE", "ab", *AGENT),
    key("AGENT_FLEET_TABLE", "a b", "agent", "init-table"),
    key("AGENT_FLEET_BATCH", "0", *AGENT),
    key("AGENT_FLEET_BATCH", "1001", *AGENT),
    # --- disk and platform
    key("RETAIN_RELEASES", "0", "prune", "--dry-run", also="1-100"),
    key("PULL_PARALLEL", "0", "deploy", "--deploy-only", "--tag", "v1", also="1-256"),
    key("PULL_PARALLEL", "lots", "deploy", "--deploy-only", "--tag", "v1"),
    key("RETAIN_RELEASES", "many", "deploy", "--deploy-only", "--tag", "v1"),
    key("DISK_RESERVE_MB", "-1", "deploy", "--deploy-only", "--tag", "v1"),
    key("GH_PLATFORM", "linux amd64", "build", "--tag", "v1"),
    key("GH_PLATFORM", "linux/amd64,", "deploy", "--deploy-only", "--tag", "v1"),
    # --- the receiver and its sender (secrets: never shown)
    Case("DEPLOY_WEBHOOK_SECRET", NOTIFY, {"DEPLOY_WEBHOOK_SECRET": "hunter2"}, "shorter", "hunter2"),
    Case("DEPLOY_WEBHOOK_SECRET", NOTIFY, {"DEPLOY_WEBHOOK_SECRET": None}, "not set"),
    Case("DEPLOY_API_TOKEN", (*NOTIFY, "--wait"), {"DEPLOY_API_TOKEN": "hunter2"}, "shorter", "hunter2"),
    Case("DATABASE_URL", SERVE, {"DATABASE_URL": "mysql://u:hunter2@db/x"}, "postgresql", "hunter2"),
    key("DEPLOY_CALLBACK_URL", "ftp://ci.example.com/x", *SERVE),
    key("DEPLOY_CALLBACK_URL", "https://ci.example.com:99999/x", *SERVE),
    key("WEBHOOK_MAX_AGE", "0", *SERVE),
    key("WEBHOOK_MAX_AGE", "\u00b9", *SERVE),
    # --- flags
    flag("--env-file", "--env-file", "{tmp}", *STATUS, also="directory"),
    flag("--env-file", "--env-file", "{tmp}/missing.env", *STATUS, also="no such file"),
    flag("--env-file", *STATUS, "--env-file", "{tmp}/missing.env"),
    flag("--tag", "push", "--tag", "v1\n"),
    flag("--tag", "build", "--tag", "-x"),
    flag("--tag", "deploy", "--deploy-only", "--tag", ""),
    flag("--tag", "deploy", "--tag", "a/b"),
    flag("--to", "rollback", "--to", "", also="empty"),
    flag("--to", "rollback", "--to", "-x"),
    flag("--to", "rollback", "--dry-run", "--to", "v1\n"),
    flag("--expect", "verify", "--expect", ""),
    flag("--expect", "verify", "--expect", "xyz1234"),
    flag("--expect", "verify", "--expect", "abc12"),
    flag("--expect", "verify", "--expect", "a" * 41),
    flag("--platform", "build", "--tag", "v1", "--platform", ""),
    flag("--platform", "deploy", "--platform", "linux amd64"),
    flag("--host", *STATUS, "--host", ""),
    flag("--host", *STATUS, "--host", "h9", also="not among"),
    flag("--host", *ROLLBACK, "--host", "u@h1:99999"),
    flag("--batch", "deploy", "--batch", "0"),
    flag("--batch", "rollback", "--batch", "\u0663"),
    flag("--batch", "deploy", "--batch", "x"),
    flag("--limit", "history", "-n", "0"),
    flag("--limit", "history", "--limit", "\u00b9"),
    flag("--message", "deploy", "-m", "\x1b[31mred"),
    flag("--message", "rollback", "-m", ""),
    flag("--interval", "agent", "--once", "--interval", "4"),
    flag("--interval", "agent", "--once", "--interval", "\u0663\u0663"),
    flag("--listen", "serve", "--listen", "nohost"),
    flag("--listen", "serve", "--listen", "0.0.0.0:99999"),
    flag("--url", "notify", "--url", "ftp://x", "--tag", "v1"),
    flag("--url", "notify", "--url", "", "--tag", "v1"),
    flag("--environment", *NOTIFY, "--environment", "prod"),
    flag("--run-url", *NOTIFY, "--run-url", "javascript:alert(1)"),
    flag("--tail", "logs", "-n", "\u00b9"),
    flag("--deploy-only", "deploy", "--push-only", "--deploy-only"),
    flag("--yes", "lock", "release"),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    audit: dict[str, list[str]]
    changed: list[str]


def _run(case: Case, base: Path) -> Outcome:
    tmp = base / f"case-{CASES.index(case)}"
    home, work = tmp / "home", tmp / "work"
    (home / ".ssh").mkdir(parents=True)
    work.mkdir()
    key_file = home / ".ssh" / "deploy.pem"
    key_file.write_text("not a real key\n")
    known_hosts = home / ".ssh" / "known_hosts"
    known_hosts.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "GIT_CEILING_DIRECTORIES": str(tmp),
        "NO_COLOR": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "GHDEPLOY_AUDIT": str(base / f"audit-{CASES.index(case)}.json"),
        "GHDEPLOY_HEAVY": json.dumps(HEAVY),
        # a complete, valid configuration: each case breaks one thing
        "ECR_REGISTRY": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "ECR_REPOSITORY": "ghosthands",
        "AWS_REGION": "us-east-1",
        "EC2_HOST": "ec2-user@h1,ec2-user@h2",
        "EC2_KEY": str(key_file),
        "SSH_KNOWN_HOSTS": str(known_hosts),
        "DEPLOY_WEBHOOK_SECRET": SECRET,
        "DEPLOY_API_TOKEN": TOKEN,
        "DATABASE_URL": f"sqlite:///{tmp}/serve.db",
    }
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.replace("{tmp}", str(tmp))
    argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
    before = _snapshot(tmp)
    proc = subprocess.run(
        [sys.executable, "-c", AUDITED, *argv],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    after = _snapshot(tmp)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    audit_file = Path(env["GHDEPLOY_AUDIT"])
    audit = json.loads(audit_file.read_text()) if audit_file.exists() else {"events": ["no audit report"], "heavy": []}
    return Outcome(proc.returncode, proc.stdout, proc.stderr, audit, changed)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Outcome]:
    """All cases at once, a few processes at a time (each is a fresh interpreter)."""
    base = tmp_path_factory.mktemp("bad-input")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: _run(case, base), CASES))
    return dict(enumerate(results))


def test_there_are_enough_cases_over_every_key_and_flag() -> None:
    from ghdeploy.config import KEYS

    tally = Counter(case.name for case in CASES)
    assert sum(tally.values()) >= 80
    assert not [k for k in KEYS if tally[k] == 0], "every declared key has at least one bad-input case"


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c.name}:{c.argv[0]}:{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_refused_cleanly(outcomes: dict[int, Outcome], index: int) -> None:
    case, out = CASES[index], outcomes[index]
    shown = f"argv={case.argv} env={case.env}\nstdout={out.stdout}\nstderr={out.stderr}"
    assert out.code == 2, shown
    assert "Traceback" not in out.stderr + out.stdout, shown
    flat = " ".join(out.stderr.split())
    assert case.name in flat, f"the message must name {case.name}: {shown}"
    if case.also:
        assert case.also in flat, f"the message must say {case.also!r}: {shown}"
    if case.hidden:
        assert case.hidden not in out.stderr + out.stdout, f"a secret was printed: {shown}"
    assert out.audit["events"] == [], f"touched the network or started a process: {out.audit['events']}\n{shown}"
    assert out.audit["heavy"] == [], f"imported {out.audit['heavy']} to refuse bad input\n{shown}"
    assert out.changed == [], f"changed files: {out.changed}\n{shown}"


def test_the_audit_sees_a_connection_when_there_is_one(tmp_path: Path) -> None:
    """Control: the same harness with valid input reaches for the (loopback, closed) host."""
    import paramiko

    key_file = tmp_path / "real.pem"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(key_file))
    control = Case("control", ("status",), {"EC2_HOST": "root@127.0.0.1:9", "EC2_KEY": str(key_file)})
    CASES.append(control)
    try:
        out = _run(control, tmp_path)
    finally:
        CASES.remove(control)
    assert out.code == 1, out.stderr
    assert any(e.startswith("socket.connect") for e in out.audit["events"]), out.audit
    assert "paramiko" in out.audit["heavy"], out.audit["heavy"]


def test_tally_by_key_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Printed with -s; the issue's closing note quotes it."""
    tally = Counter(case.name for case in CASES)
    with capsys.disabled():
        print("\nbad-input cases:", sum(tally.values()))
        for name, n in sorted(tally.items()):
            print(f"  {name}: {n}")
