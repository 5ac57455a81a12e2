"""Operator safety (issue 5), real CLI against the testbed: deploy locks, history, dry runs,
ssh config with a jump host, Ctrl-C/SIGTERM mid-deploy, and the --json documents.

Only h1 and j1 (reached through h1) are used: other tests may use h2/h3 at the same time.
Every tag is unique to one test run, so concurrent test runs never build or push the same tag.
"""

from __future__ import annotations

import getpass
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jsonschema
import paramiko
import pytest

from tests.integration.conftest import Cli, api_image_id, busy, commit, containers, git, host_http, make_broken

H1 = "root@10.77.1.2"
J1_ADDRESS = "10.77.100.2"
OPERATOR = f"{getpass.getuser()}@{socket.gethostname()}"
# Only the services that use ECR_IMAGE are brought up; others (redis, ...) are left as they run.
COMPOSE_UP = "docker compose -f /opt/ghosthands/docker-compose.prod.yml up -d --no-deps --remove-orphans -- api worker"
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h1")
    return cli_factory(EC2_HOST=H1, HEALTH_TIMEOUT="8")


def new_commit(repo: Path, name: str) -> str:
    """A commit no other test run can have (so its short SHA, the default tag, is ours alone)."""
    return commit(repo, name, {"VERSION": f"{name} {uuid.uuid4()}\n"})


def push_tag(cli: Cli, repo: Path, name: str) -> str:
    """Commit, then build and push it as a fresh tag with `deploy --push-only --tag`."""
    new_commit(repo, name)
    tag = f"safety-{name}-{uuid.uuid4().hex[:8]}"
    proc = cli("deploy", "--push-only", "--tag", tag)
    assert proc.returncode == 0, proc.stderr
    return tag


def deploy_tag(cli: Cli, tag: str, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = cli("deploy", "--deploy-only", "--tag", tag, *args)
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return proc


def lock_holder(cli: Cli) -> dict | None:
    doc = cli.json("lock", "status")
    assert doc["hosts"][0]["error"] is None, doc
    return doc["hosts"][0]["holder"]


def known_key(keys: paramiko.HostKeys, name: str) -> paramiko.PKey:
    """The one key known_hosts holds for `name`."""
    entry = keys.lookup(name)
    assert entry is not None, f"{name} is not in known_hosts"
    return next(iter(entry.values()))


def records(cli: Cli, *args: str) -> list[dict]:
    doc = cli.json("history", *args)
    assert doc["hosts"][0]["error"] is None, doc
    return doc["hosts"][0]["records"]


def health(host: str) -> str:
    """/health from inside the host. The sample app's busybox `nc` server drops a connection now
    and then under load, so one empty answer is asked again (a real outage stays empty)."""
    answer = ""
    for _ in range(3):
        answer = host_http(host, "/health").strip()
        if answer:
            break
        time.sleep(0.3)
    return answer


class Running:
    """The real CLI started in the background; its stderr is read line by line as it comes."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ghdeploy", *args],
            cwd=cli.cwd,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: list[str] = []
        self._stdout = ""
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # EOF marker
            self._changed.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout = self.proc.stdout.read()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_stderr(self, text: str, timeout: float = 120) -> None:
        """Block until a stderr line contains `text`; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self._lines):
                if self._lines and self._lines[-1] == "":
                    pytest.fail(f"exited ({self.proc.poll()}) before printing {text!r}:\n{''.join(self._lines)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no {text!r} on stderr within {timeout}s:\n{''.join(self._lines)}")
                self._changed.wait(remaining)

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for reader in self._readers:
            reader.join(30)
        return code, self._stdout, self.stderr


# --- 1. the deploy lock -------------------------------------------------------------------------


def test_two_deploys_at_once_exactly_one_runs_the_other_is_refused_at_once(h1: Cli, app_repo: Path) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1)
    v2 = push_tag(h1, app_repo, "v2")
    busy("h1", 8)  # the winner then holds the lock for the ~8 s of its drain
    first, second = (Running(h1, "deploy", "--deploy-only", "--tag", v2) for _ in range(2))

    deadline = time.monotonic() + 120
    while first.proc.poll() is None and second.proc.poll() is None:
        assert time.monotonic() < deadline, "neither deploy ended"
        time.sleep(0.05)
    loser, winner = (first, second) if first.proc.poll() is not None else (second, first)
    refused_after = time.monotonic() - loser.started
    assert winner.proc.poll() is None, "the refused deploy must end while the other still runs"
    code, out, err = loser.finish()
    assert code == 3, f"exit {code}\n{out}\n{err}"
    assert "another deploy is running, no host was touched" in err
    assert f"{H1}: held by {OPERATOR} since " in err and " ago)" in err and f"deploy of {v2}" in err
    assert "ghdeploy lock release" in err and "Traceback" not in err
    assert refused_after < 30, refused_after
    # The winner drains for seconds more: meanwhile `lock status` names it.
    holder = lock_holder(h1)
    assert winner.proc.poll() is None
    assert holder is not None and (holder["operator"], holder["tag"]) == (OPERATOR, v2)

    code, out, err = winner.finish()
    assert code == 0, f"exit {code}\n{out}\n{err}"
    assert "succeeded" in out
    assert lock_holder(h1) is None
    deploys = records(h1)
    assert [(r["action"], r["result"]) for r in deploys] == [("deploy", "succeeded"), ("deploy", "succeeded")]


def test_lock_left_by_a_killed_deploy_shows_blocks_and_is_released(h1: Cli, app_repo: Path) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1)
    assert lock_holder(h1) is None
    v2 = push_tag(h1, app_repo, "v2")
    busy("h1", 8)
    run = Running(h1, "deploy", "--deploy-only", "--tag", v2, "-m", "stale lock test")
    run.wait_for_stderr("draining")
    # Killed without a chance to clean up (kill -9, a laptop lid closed): its lock stays behind.
    run.proc.kill()
    run.finish()

    holder = lock_holder(h1)
    assert holder is not None and set(holder) == {"schema", "id", "operator", "action", "tag", "message", "since"}
    assert holder["operator"] == OPERATOR and holder["action"] == "deploy" and holder["tag"] == v2
    assert holder["message"] == "stale lock test" and ISO_TIME.match(holder["since"])
    table = h1("lock", "status")
    assert table.returncode == 0, table.stderr
    assert "held" in table.stdout and OPERATOR in table.stdout and " ago)" in table.stdout
    assert "stale lock test" in table.stdout

    before = containers("h1")
    refused = h1("deploy", "--deploy-only", "--tag", v1)
    assert refused.returncode == 3, refused.stderr
    assert OPERATOR in refused.stderr and "stale lock test" in refused.stderr
    assert containers("h1") == before

    unconfirmed = h1("lock", "release")  # stdin is not a terminal and there is no --yes
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr and "Traceback" not in unconfirmed.stderr
    assert lock_holder(h1) is not None

    released = h1.json("lock", "release", "--yes")
    assert released["hosts"][0]["released"] is True
    assert released["hosts"][0]["holder"]["operator"] == OPERATOR
    assert lock_holder(h1) is None
    free = h1("lock", "status")
    assert "free" in free.stdout and OPERATOR not in free.stdout
    again = h1.json("lock", "release", "--yes")
    assert again["hosts"][0]["released"] is False and again["hosts"][0]["holder"] is None

    # The host the killed deploy left half-drained is deployable again, and the next deploy says
    # it found the killed one's unfinished record.
    status = h1.json("status", ok_codes=(0, 1))
    assert status["hosts"][0]["unfinished_deploy"]["to"]["label"].endswith(v2)
    redeploy = deploy_tag(h1, v2)
    assert "found an unfinished deploy" in redeploy.stderr
    assert lock_holder(h1) is None
    assert health("h1") == '{"status":"ok"}'


def test_a_deploy_whose_lock_was_released_does_not_free_the_next_holders_lock(h1: Cli, app_repo: Path) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1)
    v2 = push_tag(h1, app_repo, "v2")
    busy("h1", 8)
    first = Running(h1, "deploy", "--deploy-only", "--tag", v2, "-m", "first")
    first.wait_for_stderr("draining")
    # The operator takes the running deploy's lock for a stale one and frees it; another deploy
    # takes the lock and dies holding it.
    assert h1("lock", "release", "--yes").returncode == 0
    second = Running(h1, "deploy", "--deploy-only", "--tag", v2, "-m", "second")
    second.wait_for_stderr("draining")
    second.proc.kill()
    second.finish()
    holder = lock_holder(h1)
    assert holder is not None and holder["message"] == "second"

    code, out, err = first.finish()
    assert code == 0, f"exit {code}\n{out}\n{err}"
    # The first deploy, finishing, must not remove a lock it no longer holds.
    assert "no longer holds" in err
    holder = lock_holder(h1)
    assert holder is not None and holder["message"] == "second"


# --- 2. history -----------------------------------------------------------------------------------


def test_history_records_deploys_failures_and_rollbacks(h1: Cli, app_repo: Path) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1, "-m", "first")
    v1_image = api_image_id("h1")
    assert lock_holder(h1) is None
    v2 = push_tag(h1, app_repo, "v2")
    deploy_tag(h1, v2)
    v2_image = api_image_id("h1")
    make_broken(app_repo)
    broken = f"safety-broken-{uuid.uuid4().hex[:8]}"
    assert h1("deploy", "--push-only", "--tag", broken).returncode == 0
    failed = deploy_tag(h1, broken, code=1)
    assert "rolled back" in failed.stdout
    assert lock_holder(h1) is None  # released after a failure too
    assert api_image_id("h1") == v2_image
    rolled = h1("rollback", "-m", "back to v1")
    assert rolled.returncode == 0, rolled.stderr
    assert api_image_id("h1") == v1_image
    assert lock_holder(h1) is None

    history = records(h1)
    assert [(r["action"], r["result"]) for r in history] == [
        ("deploy", "succeeded"),
        ("deploy", "succeeded"),
        ("deploy", "rolled back"),
        ("rollback", "succeeded"),
    ]
    keys = {"time", "action", "operator", "message", "from", "to", "image_id", "result", "error", "duration_s"}
    for record in history:
        assert set(record) == keys | {"ghdeploy", "schema", "started", "finished"}, record
        assert record["schema"] == 2, record
        assert ISO_TIME.match(record["time"]), record
        assert record["operator"] == OPERATOR
        assert 0 < record["duration_s"] < 120
    first, second, bad, back = history
    assert first["from"] is None and first["to"]["label"] == f"ghosthands:{v1}" and first["message"] == "first"
    assert first["image_id"] == v1_image
    assert (second["from"]["tag"], second["from"]["image_id"]) == (v1, v1_image)
    assert second["to"]["label"] == f"ghosthands:{v2}" and second["image_id"] == v2_image
    assert bad["from"]["image_id"] == v2_image and bad["to"]["label"] == f"ghosthands:{broken}"
    assert "/health did not answer 200" in bad["error"] and bad["image_id"] == v2_image
    assert back["from"]["image_id"] == v2_image and back["to"]["image_id"] == v1_image
    assert back["image_id"] == v1_image and back["message"] == "back to v1"

    assert records(h1, "-n", "2") == history[-2:]
    assert records(h1, "--limit", "1") == history[-1:]
    table = h1("history", "-n", "3")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if H1 in line]
    assert len(lines) == 3 and "rolled back" in lines[1] and "back to v1" in lines[2]
    assert all(OPERATOR in line for line in lines)


# --- 3. dry runs ----------------------------------------------------------------------------------


def jump_config(path: Path, key: str) -> Path:
    """An ssh config in which `j1` is reached through `gate` (h1), both from aliases."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "Host gate\n"
        "  HostName 10.77.1.2\n"
        "  User root\n"
        f"  IdentityFile {key}\n"
        "Host j1\n"
        f"  HostName {J1_ADDRESS}\n"
        "  User root\n"
        f"  IdentityFile {key}\n"
        "  ProxyJump gate\n"
    )
    return path


def test_dry_run_prints_the_exact_plan_and_changes_nothing(
    h1: Cli, app_repo: Path, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1)
    v2 = push_tag(h1, app_repo, "v2")
    deploy_tag(h1, v2)
    v3 = push_tag(h1, app_repo, "v3")
    before = containers("h1")
    history = records(h1)

    # Two hosts, in EC2_HOST's order: j1 (through the jump host, from SSH_CONFIG) first.
    config = jump_config(tmp_path / "ssh_config", testbed_env["EC2_KEY"])
    fleet = {"EC2_HOST": f"j1,{H1}", "SSH_CONFIG": str(config)}
    # By default a short human plan per host; -v adds the exact commands.
    human = h1("deploy", "--deploy-only", "--dry-run", "--tag", v3, extra_env=fleet)
    assert human.returncode == 0, human.stderr
    assert f"runs now: {v2}" in human.stdout and f"switches to: {v3}" in human.stdout
    assert f"if it fails: back to {v2}" in human.stdout
    assert "pulls ghosthands:" in human.stdout or "no pull:" in human.stdout
    assert "$ " not in human.stdout and "-v shows them exactly" in human.stdout
    proc = h1("-v", "deploy", "--deploy-only", "--dry-run", "--tag", v3, extra_env=fleet)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"dry run: deploy of {v3}; nothing was changed" in out
    assert out.index("1. j1") < out.index(f"2. {H1}")
    assert f"runs now: {v2}" in out
    image = f"{testbed_env['ECR_REGISTRY']}/ghosthands:{v3}"
    assert f"$ env ECR_IMAGE={image} {COMPOSE_UP}" in out
    assert (
        f"env ECR_IMAGE={image} docker compose -f /opt/ghosthands/docker-compose.prod.yml pull --quiet -- api worker"
        in out
    )
    assert 'stop -t "$t" -- "$s"' in out and "sh 35 worker" in out  # STOP_TIMEOUT, then rm
    assert "/opt/ghosthands/.ghdeploy/lock XXXXXXXXXXXXXXXX" in out
    assert "123456789012-auth-token" not in out + proc.stderr

    doc = h1.json("deploy", "--deploy-only", "--dry-run", "--tag", v3)
    assert doc["ok"] is True and doc["deploy"] is None and doc["tag"] == v3
    (item,) = doc["plan"]
    assert item["host"] == H1 and item["lock"] is None
    assert item["current"]["tag"] == v2 and item["rollback_to"]["tag"] == v2
    assert f"env ECR_IMAGE={image} {COMPOSE_UP}" in item["commands"]

    # The whole pipeline's dry run works before the build: the tag need not be in the registry yet.
    head = new_commit(app_repo, "not built")
    full = h1("deploy", "--dry-run", "-v")
    assert full.returncode == 0, full.stderr
    short = git(app_repo, "rev-parse", "--short", "HEAD")
    assert f"dry run: deploy of {short}" in full.stdout and COMPOSE_UP in full.stdout
    assert head.startswith(short)

    back = h1("rollback", "--dry-run", "-v")
    assert back.returncode == 0, back.stderr
    assert "dry run: rollback of previous; nothing was changed" in back.stdout
    assert f"runs now: {v2}" in back.stdout
    assert f"env ECR_IMAGE={testbed_env['ECR_REGISTRY']}/ghosthands:{v1} {COMPOSE_UP}" in back.stdout
    rollback_doc = h1.json("rollback", "--dry-run")
    (item,) = rollback_doc["plan"]
    assert item["rollback_to"]["label"] == f"ghosthands:{v1}" and item["current"]["tag"] == v2

    assert containers("h1") == before
    assert lock_holder(h1) is None
    assert records(h1) == history


# --- 4. ssh config and a jump host ----------------------------------------------------------------


def test_full_deploy_through_a_jump_host_named_in_ssh_config(
    cli_factory: Callable[..., Cli], app_repo: Path, clean_hosts: Callable[..., None], testbed_env: dict[str, str]
) -> None:
    clean_hosts("j1")
    cli = cli_factory(EC2_HOST="j1", HEALTH_TIMEOUT="20")
    home = Path(cli.env["HOME"])
    jump_config(home / ".ssh" / "config", testbed_env["EC2_KEY"])
    # EC2_KEY is a key neither host accepts: logging in works only with the config's IdentityFile.
    wrong_key = home / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True)
    cli.env["EC2_KEY"] = str(wrong_key)

    sha = new_commit(app_repo, "via jump")
    proc = cli("deploy")
    assert proc.returncode == 0, f"stdout:{proc.stdout}\nstderr:{proc.stderr}"
    assert "j1: connected" in proc.stderr
    assert re.search(r"verify j1: ok " + sha, proc.stdout), proc.stdout
    assert json.loads(host_http("j1", "/health/version"))["commit_sha"] == sha
    assert cli("verify").returncode == 0
    assert cli.json("lock", "status")["hosts"][0]["holder"] is None
    assert cli.json("history")["hosts"][0]["records"][-1]["result"] == "succeeded"

    # Host keys are checked under the HostName of each hop (as OpenSSH does), never the alias.
    testbed_known = paramiko.HostKeys(testbed_env["SSH_KNOWN_HOSTS"])
    j1_key = known_key(testbed_known, J1_ADDRESS)
    h1_key = known_key(testbed_known, "10.77.1.2")
    only_h1 = home / "known_hosts_h1"
    only_h1.write_text(f"10.77.1.2 {h1_key.get_name()} {h1_key.get_base64()}\n")
    unknown = cli("--json", "status", extra_env={"SSH_KNOWN_HOSTS": str(only_h1)})
    assert unknown.returncode == 1, unknown.stderr
    error = json.loads(unknown.stdout)["hosts"][0]["error"]
    assert f"unknown host key for {J1_ADDRESS}: ssh-ed25519 {j1_key.fingerprint}" in error
    wrong = home / "known_hosts_wrong"  # j1's name with h1's key: a changed key
    wrong.write_text(only_h1.read_text() + f"{J1_ADDRESS} {h1_key.get_name()} {h1_key.get_base64()}\n")
    changed = cli("deploy", "--deploy-only", extra_env={"SSH_KNOWN_HOSTS": str(wrong)})
    assert changed.returncode == 2
    assert f"host key for {J1_ADDRESS} has CHANGED" in changed.stderr
    accepting = cli("status", "--accept-new-host-key", extra_env={"SSH_KNOWN_HOSTS": str(only_h1)})
    assert accepting.returncode == 0, accepting.stdout + accepting.stderr
    recorded = paramiko.HostKeys(str(only_h1))
    assert recorded.lookup("j1") is None
    assert known_key(recorded, J1_ADDRESS) == j1_key


# --- 5. interruption ------------------------------------------------------------------------------


def assert_left_on(cli: Cli, image_id: str, code: int, out: str, err: str) -> dict:
    """After an interrupted deploy: exit 130, host on `image_id` and healthy, lock free, recorded."""
    assert code == 130, f"exit {code}\nstdout:{out}\nstderr:{err}"
    assert "Traceback" not in err
    assert api_image_id("h1") == image_id
    assert health("h1") == '{"status":"ok"}'
    assert lock_holder(cli) is None
    last = records(cli)[-1]
    assert last["error"] == "interrupted" and last["image_id"] == image_id
    return last


def test_ctrl_c_while_draining_puts_the_recorded_image_back(h1: Cli, app_repo: Path) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1)
    v1_image = api_image_id("h1")
    v2 = push_tag(h1, app_repo, "v2")
    busy("h1", 8)
    run = Running(h1, "deploy", "--deploy-only", "--tag", v2)
    run.wait_for_stderr("draining")
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    last = assert_left_on(h1, v1_image, code, out, err)
    assert last["result"] == "rolled back"
    assert "SIGINT: stopping at the next safe point" in err
    assert re.search(rf"{re.escape(H1)} +│ rolled back", out), out
    assert "interrupted" in out
    # The worker that was told to drain is replaced: the one running now takes work again.
    deadline = time.monotonic() + 60
    while (worker := host_http("h1", "/worker/health", 3101)) == "" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(worker)["status"] == "idle"


@pytest.mark.parametrize("moment", ["waiting for /health", "docker compose up -d"])
def test_sigterm_after_the_switch_rolls_back_at_once(h1: Cli, app_repo: Path, moment: str) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1)
    v1_image = api_image_id("h1")
    make_broken(app_repo)
    broken = f"safety-broken-{uuid.uuid4().hex[:8]}"
    assert h1("deploy", "--push-only", "--tag", broken).returncode == 0
    # A long health timeout: only the signal can make this deploy end soon.
    slow = Cli(h1.cwd, dict(h1.env, HEALTH_TIMEOUT="120"))
    run = Running(slow, "deploy", "--deploy-only", "--tag", broken)
    run.wait_for_stderr(moment)
    signalled = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code, out, err = run.finish()
    assert time.monotonic() - signalled < 60, "the deploy waited out its health timeout"
    last = assert_left_on(h1, v1_image, code, out, err)
    assert last["result"] == "rolled back" and last["to"]["label"] == f"ghosthands:{broken}"
    assert "SIGTERM: stopping at the next safe point" in err
    assert "/health did not answer" not in out + err
    assert re.search(rf"{re.escape(H1)} +│ rolled back", out), out


def test_interrupt_before_the_switch_leaves_the_host_untouched(h1: Cli, app_repo: Path) -> None:
    v1 = push_tag(h1, app_repo, "v1")
    deploy_tag(h1, v1)
    v1_image = api_image_id("h1")
    before = containers("h1")
    history = records(h1)
    v2 = push_tag(h1, app_repo, "v2")
    run = Running(h1, "deploy", "--deploy-only", "--tag", v2)
    run.wait_for_stderr("resolving")
    # Frozen before it reaches any host, the signal is handled the moment it resumes: the
    # interrupt surely lands during the preflight, whatever the machine's load.
    run.proc.send_signal(signal.SIGSTOP)
    run.proc.send_signal(signal.SIGINT)
    run.proc.send_signal(signal.SIGCONT)
    code, out, err = run.finish()
    assert code == 130, f"exit {code}\nstdout:{out}\nstderr:{err}"
    assert "interrupted before any host was changed" in err, err
    assert containers("h1") == before and api_image_id("h1") == v1_image
    assert health("h1") == '{"status":"ok"}'
    assert lock_holder(h1) is None
    assert records(h1) == history  # nothing happened on the host, so there is nothing to record


def test_ctrl_c_during_the_build_stops_at_once_and_kills_the_build(h1: Cli, app_repo: Path) -> None:
    before = containers("h1")
    dockerfile = (app_repo / "Dockerfile").read_text()
    slow = dockerfile.replace("CMD [", 'RUN ["/bin/busybox", "sleep", "60"]\nCMD [', 1)
    commit(app_repo, "slow build", {"Dockerfile": slow})
    run = Running(h1, "deploy")
    run.wait_for_stderr("sleep")
    interrupted_at = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish(timeout=30)
    assert code == 130, f"exit {code}\nstdout:{out}\nstderr:{err}"
    assert time.monotonic() - interrupted_at < 10
    assert "interrupted before any host was changed" in err
    builds = subprocess.run(["pgrep", "-af", f"docker build .*{app_repo}"], capture_output=True, text=True).stdout
    assert builds.strip() == "", builds
    assert containers("h1") == before


# --- 6. --json documents ----------------------------------------------------------------------------

COMMON = {"version", "ghdeploy", "command", "ok"}
DEPLOY_KEYS = COMMON | {"exit_code", "tag", "build", "push", "deploy", "verify", "timings", "plan"}
FLEET_KEYS = {"action", "target", "succeeded", "interrupted", "summary", "duration_s", "hosts"}
HOST_RESULT_KEYS = {
    "host",
    "action",
    "result",
    "succeeded",
    "from",
    "to",
    "image_id",
    "phases",
    "duration_s",
    "error",
    "notes",
}
SUMMARY_KEYS = {
    "total",
    "succeeded",
    "rolled back",
    "rollback failed",
    "failed",
    "untouched",
    "abandoned",
    "unconfirmed",
}
PLAN_KEYS = {"host", "current", "lock", "rollback_to", "commands", "steps", "summary"}
STATUS_HOST_KEYS = {
    "host",
    "ok",
    "error",
    "health",
    "version",
    "worker",
    "services",
    "targeted_workers",
    "last_deploy",
    "unfinished_deploy",
    "lock",
    "agent",
    "disk",
    "problem",
    "hint",
}
BUILD_KEYS = {"tag", "image", "image_id", "commit_sha", "build_time", "refs", "dirty", "seconds"}
PUSH_KEYS = {"tag", "image", "digest", "refs", "seconds"}


SCHEMA = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[2] / "docs/json-schema/ghdeploy.schema.json").read_text())
)


def one_document(proc: subprocess.CompletedProcess[str], command: str, code: int = 0) -> dict:
    """stdout is exactly one JSON document (json.loads refuses anything after it), with the schema version."""
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict) and doc["version"] == 1 and doc["command"] == command
    assert doc["ok"] is (code == 0)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in SCHEMA.iter_errors(doc)]
    assert not errors, f"{command} --json does not match docs/json-schema: {errors[:5]}"
    return doc


def test_every_json_document_has_its_documented_keys(h1: Cli, app_repo: Path) -> None:
    sha = new_commit(app_repo, "json")
    tag = f"safety-json-{uuid.uuid4().hex[:8]}"

    build = one_document(h1("--json", "build", "--tag", tag), "build")
    assert set(build) == COMMON | BUILD_KEYS and build["commit_sha"] == sha and build["seconds"] > 0
    push = one_document(h1("--json", "push", "--tag", tag), "push")
    assert set(push) == COMMON | PUSH_KEYS and push["seconds"] > 0

    deploy = one_document(h1("--json", "deploy", "--deploy-only", "--tag", tag), "deploy")
    assert set(deploy) == DEPLOY_KEYS and deploy["exit_code"] == 0
    assert set(deploy["deploy"]) == FLEET_KEYS and set(deploy["deploy"]["summary"]) == SUMMARY_KEYS
    assert set(deploy["deploy"]["hosts"][0]) == HOST_RESULT_KEYS
    full = one_document(h1("--json", "deploy", "--tag", f"{tag}-full"), "deploy")
    assert set(full["build"]) == BUILD_KEYS and set(full["push"]) == PUSH_KEYS
    assert full["verify"][0]["ok"] is True
    plan = one_document(h1("--json", "deploy", "--deploy-only", "--dry-run", "--tag", tag), "deploy")
    assert set(plan) == DEPLOY_KEYS and set(plan["plan"][0]) == PLAN_KEYS

    rollback = one_document(h1("--json", "rollback"), "rollback")
    assert set(rollback) == DEPLOY_KEYS and set(rollback["deploy"]["hosts"][0]) == HOST_RESULT_KEYS
    assert rollback["deploy"]["action"] == "rollback"

    status = one_document(h1("--json", "status"), "status")
    assert set(status) == COMMON | {"hosts"} and set(status["hosts"][0]) == STATUS_HOST_KEYS
    verify = one_document(h1("--json", "verify", "--expect", sha), "verify")
    assert set(verify) == COMMON | {"hosts", "expected", "expected_from", "note"}
    assert set(verify["hosts"][0]) == {"host", "ok", "expected", "running", "image_tag", "build_time", "error"}
    history = one_document(h1("--json", "history", "-n", "1"), "history")
    assert set(history) == COMMON | {"hosts"} and set(history["hosts"][0]) == {"host", "records", "error", "warnings"}
    for command in (["lock", "status"], ["lock", "release", "--yes"]):
        doc = one_document(h1("--json", *command), " ".join(command[:2]))
        assert set(doc) == COMMON | {"hosts"}
        assert set(doc["hosts"][0]) == {"host", "holder", "released", "error"}

    hosts = one_document(h1("--json", "hosts"), "hosts")
    assert set(hosts) == COMMON | {"source", "hosts", "skipped"}
    assert set(hosts["hosts"][0]) == {"host", "user", "hostname", "port"}

    error_keys = {"message", "hint", "exit_code", "type"}
    missing = one_document(h1("--json", "deploy", "--deploy-only", "--tag", "no-such-tag-x1"), "error", code=2)
    assert set(missing) == COMMON | {"error"} and set(missing["error"]) == error_keys
    assert missing["error"]["exit_code"] == 2 and "no such tag" in missing["error"]["message"]
    usage = one_document(h1("--json", "deploy", "--batch", "0"), "error", code=2)
    assert set(usage["error"]) == error_keys and "batch" in usage["error"]["message"]
    unreachable = one_document(h1("--json", "status", extra_env={"EC2_HOST": "root@10.77.250.2"}), "status", code=1)
    assert unreachable["hosts"][0]["error"] and set(unreachable["hosts"][0]) == STATUS_HOST_KEYS
