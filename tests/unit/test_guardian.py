"""The host's dead-man's switch (ghdeploy.guardian): its scripts run for real under /bin/sh here,
with a stand-in `docker` on PATH that logs its calls and answers like a host's engine."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ghdeploy.engine import guardian
from ghdeploy.remote_commands import RemoteLayout

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64
LOCK_ID = "0123456789abcdef"

# The stand-in engine: `compose ... up` records which image the services now run (ECR_IMAGE),
# `compose ps -q SERVICE` names a container, `inspect` says what it runs and how it is.
FAKE_DOCKER = r"""#!/bin/sh
echo "docker $*" >> "$FAKE/calls"
case "$1" in
  compose)
    case " $* " in
      *" up "*)
        case "$ECR_IMAGE" in *old*) echo OLD > "$FAKE/image" ;; *) echo NEW > "$FAKE/image" ;; esac
        [ -f "$FAKE/up_fails" ] && exit 1
        exit 0 ;;
      *" ps -q "*) echo "c-$(eval echo \${$#})"; exit 0 ;;
    esac ;;
  inspect)
    case "$*" in
      *State.Running*) echo "${TARGETED_RUNNING:-true}"; exit 0 ;;
    esac
    img=$(cat "$FAKE/image" 2>/dev/null || echo OLD)
    [ "$img" = OLD ] && id=$OLD_ID || id=$NEW_ID
    echo "$id running 0 $(cat "$FAKE/health" 2>/dev/null || echo healthy)"; exit 0 ;;
  ps) cat "$FAKE/containers" 2>/dev/null; exit 0 ;;
  start) exit 0 ;;
esac
exit 0
"""

TOOLS = (
    "sh",
    "setsid",
    "nohup",
    "cat",
    "mv",
    "date",
    "sed",
    "grep",
    "sleep",
    "kill",
    "rm",
    "mkdir",
    "tail",
    "dirname",
    "head",
)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fake host: PATH with the fake docker and only the basic tools (no curl, no wget)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    for tool in TOOLS:
        for prefix in ("/usr/bin", "/bin"):
            if Path(prefix, tool).exists():
                (bin_dir / tool).symlink_to(Path(prefix, tool))
                break
    fake = tmp_path / "fake"
    fake.mkdir()
    app = tmp_path / "opt"
    app.mkdir()
    yield {
        "PATH": str(bin_dir),
        "FAKE": str(fake),
        "OLD_ID": OLD,
        "NEW_ID": NEW,
        "APP": str(app),
    }
    # Retire any guardian still watching (it leaves when its pid file names another process).
    for pid_file in app.glob(".ghdeploy/guardian/*/pid"):
        pid_file.write_text("1\n")


def layout(host: dict[str, str]) -> RemoteLayout:
    return RemoteLayout(app_dir=host["APP"], compose_file=f"{host['APP']}/docker-compose.prod.yml")


def sh(host: dict[str, str], argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run an argv the way a host's sshd would: one shell line, quoted with shlex.join."""
    env = {k: v for k, v in host.items()}
    return subprocess.run(["/bin/sh", "-c", shlex.join(argv)], input=stdin, env=env, capture_output=True, timeout=60)


def take_lock(lay: RemoteLayout, lock_id: str = LOCK_ID) -> None:
    Path(lay.lock_dir).mkdir(parents=True)
    Path(lay.lock_dir, "info.json").write_text(json.dumps({"id": lock_id}))


def plan(host: dict[str, str], **kw: object) -> guardian.SwitchPlan:
    values: dict[str, object] = {
        "compose_file": layout(host).compose_file,
        "app_dir": host["APP"],
        "restore_ref": "reg/app:old",
        "restore_id": OLD,
        "new_ref": "reg/app:new",
        "new_id": NEW,
        "stop_timeout": 2,
        "health_timeout": 3,
        "api_port": 3100,
    }
    values.update(kw)
    return guardian.SwitchPlan(**values)  # type: ignore[arg-type]


BASE = {"action": "deploy", "operator": "ann@laptop", "from": {"image_id": OLD}, "to": {"ref": "reg/app:new"}}


def arm(host: dict[str, str], lease: int, switch: guardian.SwitchPlan | None, phase: str | None = None) -> str:
    """Prepare, tell the phase, launch, then set the (short) deadline: no race with a busy machine."""
    lay = layout(host)
    g = guardian.guardian_dir(lay, LOCK_ID)
    assert sh(host, guardian.prepare(lay, LOCK_ID, 60)).returncode == 0
    if phase:
        assert sh(host, guardian.set_phase(g, phase)).returncode == 0
    proc = sh(host, guardian.launch(lay, LOCK_ID, switch), guardian.record_lines(BASE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().isdigit()
    assert sh(host, guardian.renew(g, lease)).returncode == 0
    return g


def wait_result(g: str, timeout: float = 40) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        path = Path(g, "result")
        if path.exists():
            return path.read_text().strip()
        time.sleep(0.2)
    raise AssertionError("no result; log:\n" + Path(g, "log").read_text())


def eventually(check: Callable[[], bool], timeout: float = 15) -> bool:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def history(lay: RemoteLayout) -> list[dict]:
    path = Path(lay.history_file)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def calls(host: dict[str, str]) -> str:
    path = Path(host["FAKE"], "calls")
    return path.read_text() if path.exists() else ""


def test_fires_mid_switch_restores_the_recorded_image_records_and_frees_the_lock(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    Path(lay.pending_file).write_text("{}")
    Path(host["FAKE"], "image").write_text("NEW\n")  # the switch had started
    g = arm(host, 1, plan(host), "changing")
    assert wait_result(g) == "restored"
    log = calls(host)
    assert "compose -f " + lay.compose_file + " up -d --timeout 2 api" in log
    assert "up -d --no-deps --force-recreate --timeout 2 worker" in log  # a drained worker starts afresh
    assert Path(host["FAKE"], "image").read_text().strip() == "OLD"
    [rec] = history(lay)
    assert rec["result"] == "abandoned" and rec["guardian"] == "restored" and rec["image_id"] == OLD
    assert "changing phase" in rec["error"] and "ann@laptop" in rec["error"] and "@@" not in json.dumps(rec)
    assert rec["from"] == {"image_id": OLD} and rec["time"].endswith("Z")
    assert not Path(lay.lock_dir).exists() and not Path(lay.pending_file).exists()


def test_fires_mid_replacement_puts_the_renamed_targeted_workers_back(host: dict[str, str]) -> None:
    """The laptop died while replacing targeted workers: gh-worker-1 had been renamed and its
    replacement created (running), gh-worker-2 renamed with no replacement yet. Both come back
    under their names, the one whose replacement ran started, then stopped targeted ones started."""
    lay = layout(host)
    take_lock(lay)
    Path(host["FAKE"], "image").write_text("NEW\n")
    names = ["ghosthands-api-1", "gh-worker-1", "gh-worker-1.ghdeploy-backup", "gh-worker-2.ghdeploy-backup"]
    Path(host["FAKE"], "containers").write_text("\n".join(names) + "\n")
    g = arm(host, 1, plan(host, targeted=("gh-worker-1", "gh-worker-2")), "changing")
    assert wait_result(g) == "restored"
    log = calls(host).splitlines()
    put_back = [c for c in log if c.startswith(("docker rm", "docker rename", "docker start"))]
    assert put_back[:5] == [
        "docker rm -f gh-worker-1",
        "docker rename gh-worker-1.ghdeploy-backup gh-worker-1",
        "docker start gh-worker-1",
        "docker rm -f gh-worker-2",
        "docker rename gh-worker-2.ghdeploy-backup gh-worker-2",
    ]
    assert log.index("docker rename gh-worker-1.ghdeploy-backup gh-worker-1") > next(
        i for i, c in enumerate(log) if "force-recreate" in c
    )  # after the app is back on the recorded image
    assert "putting back any targeted worker" in Path(g, "log").read_text()
    [rec] = history(lay)
    assert rec["guardian"] == "restored" and not Path(lay.lock_dir).exists()


def test_a_kept_new_image_leaves_the_backups_to_the_next_run(host: dict[str, str]) -> None:
    """Nothing ran before (no recorded image): the new one is kept, and so are the replacements;
    the next deploy's recover_backups settles the backups."""
    lay = layout(host)
    take_lock(lay)
    Path(host["FAKE"], "containers").write_text("gh-worker-1\ngh-worker-1.ghdeploy-backup\n")
    g = arm(host, 1, plan(host, restore_ref="", restore_id="", targeted=("gh-worker-1",)), "changing")
    assert wait_result(g) == "kept"
    assert "rename" not in calls(host) and "docker ps" not in calls(host)


def test_the_guardian_puts_backups_back_with_the_drivers_own_script() -> None:
    from ghdeploy import remote_commands as rc

    assert rc.restore_all_backups()[2] in guardian.GUARDIAN_SCRIPT
    assert "@@" not in guardian.GUARDIAN_SCRIPT.replace("@@TIME@@", "").replace("@@PHASE@@", "").replace(
        "@@IMAGE_ID@@", ""
    )


def test_a_renewed_guardian_does_nothing_and_finish_disarms_and_frees_the_lock(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    g = arm(host, 3, plan(host))
    for _ in range(4):
        assert sh(host, guardian.renew(g, 3)).returncode == 0
        time.sleep(1)
    assert not Path(g, "fired").exists()
    assert sh(host, guardian.finish(g, lay, LOCK_ID)).returncode == 0
    assert not Path(lay.lock_dir).exists()
    assert eventually(lambda: "disarmed" in Path(g, "log").read_text())
    assert calls(host) == "" and history(lay) == []


def test_finish_leaves_another_deploys_lock(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay, "ffffffffffffffff")
    g = arm(host, 30, None)
    assert sh(host, guardian.finish(g, lay, LOCK_ID)).returncode == 75
    assert Path(lay.lock_dir).exists()


def test_lock_phase_guardian_only_frees_the_lock_with_an_untouched_record(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    g = arm(host, 1, None)
    assert wait_result(g) == "untouched"
    assert calls(host) == ""
    [rec] = history(lay)
    assert rec["guardian"] == "untouched" and rec["image_id"] is None
    assert not Path(lay.lock_dir).exists()


def test_a_lock_someone_else_holds_now_is_left_alone(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay, "ffffffffffffffff")
    g = arm(host, 1, None)
    assert wait_result(g) == "untouched"
    assert Path(lay.lock_dir).exists()


def test_switch_guardian_takes_over_from_the_lock_guardian(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    g = arm(host, 30, None)
    first = Path(g, "pid").read_text().strip()
    proc = sh(host, guardian.launch(lay, LOCK_ID, plan(host)), guardian.record_lines(BASE))
    assert proc.returncode == 0 and proc.stdout.strip() != first
    assert eventually(lambda: f"guardian {first} (lock): handed over" in Path(g, "log").read_text())


def test_confirmed_new_image_is_kept(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    Path(host["FAKE"], "image").write_text("NEW\n")
    g = arm(host, 1, plan(host), "confirmed")
    assert wait_result(g) == "kept"
    assert " up " not in calls(host)
    [rec] = history(lay)
    assert rec["guardian"] == "kept" and rec["image_id"] == NEW


def test_after_the_drivers_own_record_only_the_lock_is_freed(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    g = arm(host, 3, plan(host), "changing")
    assert sh(host, guardian.hold(g)).returncode == 0
    assert Path(g, "held").exists() and not Path(g, "armed").exists()
    Path(lay.history_file).write_text(json.dumps({"result": "succeeded"}) + "\n")  # the driver's own record
    assert sh(host, guardian.unhold(g, True)).returncode == 0
    assert Path(g, "phase").read_text().strip() == "recorded" and Path(g, "armed").exists()
    assert wait_result(g) == "recorded"
    assert [r["result"] for r in history(lay)] == ["succeeded"]
    assert " up " not in calls(host) and not Path(lay.lock_dir).exists()


def test_a_hold_never_given_back_counts_as_a_dead_driver(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    g = arm(host, 1, plan(host), "confirmed")
    Path(host["FAKE"], "image").write_text("NEW\n")
    assert sh(host, guardian.hold(g)).returncode == 0
    assert wait_result(g) == "kept"  # after the 15 s allowed for a hold
    assert not Path(lay.lock_dir).exists()


def test_disarm_after_the_driver_freed_the_lock(host: dict[str, str]) -> None:
    g = arm(host, 30, None)
    assert sh(host, guardian.disarm(g)).returncode == 0
    assert Path(g, "done").exists()
    assert eventually(lambda: "disarmed" in Path(g, "log").read_text())
    assert sh(host, guardian.disarm(g)).returncode == guardian.TOOK_OVER  # once only


def test_unhealthy_restore_is_recorded_as_failed_and_keeps_pending(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    Path(lay.pending_file).write_text("{}")
    Path(host["FAKE"], "health").write_text("unhealthy")
    g = arm(host, 1, plan(host, health_timeout=0), "changing")
    assert wait_result(g) == "failed"
    [rec] = history(lay)
    assert rec["guardian"] == "failed" and "check it" in rec["error"]
    assert Path(lay.pending_file).exists() and not Path(lay.lock_dir).exists()


def test_health_uses_curl_when_the_host_has_it(host: dict[str, str], tmp_path: Path) -> None:
    curl = Path(host["PATH"], "curl")
    curl.write_text('#!/bin/sh\necho "curl $*" >> "$FAKE/calls"\nexit 0\n')
    curl.chmod(0o755)
    lay = layout(host)
    take_lock(lay)
    Path(host["FAKE"], "health").write_text("starting")  # the compose healthcheck has not run yet
    g = arm(host, 1, plan(host), "changing")
    assert wait_result(g) == "restored"
    assert "curl -fsS -m 2 -o /dev/null http://localhost:3100/health" in calls(host)


def test_first_deploy_has_nothing_to_restore_and_keeps_the_new_image(host: dict[str, str]) -> None:
    lay = layout(host)
    take_lock(lay)
    g = arm(host, 1, plan(host, restore_ref="", restore_id=""), "changing")
    assert wait_result(g) == "kept"
    assert "ECR" not in calls(host)
    assert Path(host["FAKE"], "image").read_text().strip() == "NEW"


def test_fence_refuses_once_fired_and_leaves_its_pid(host: dict[str, str]) -> None:
    lay = layout(host)
    g = arm(host, 30, None)
    ok = sh(host, guardian.fence(g, ["sh", "-c", 'echo "$$"']))
    assert ok.returncode == 0 and Path(g, "inflight").read_text().strip() == ok.stdout.decode().strip()
    os.rename(Path(g, "armed"), Path(g, "fired"))
    assert sh(host, guardian.fence(g, ["touch", str(Path(host["FAKE"], "x"))])).returncode == guardian.TOOK_OVER
    assert not Path(host["FAKE"], "x").exists()
    assert sh(host, guardian.renew(g)).returncode == guardian.TOOK_OVER
    assert sh(host, guardian.finish(g, lay, LOCK_ID)).returncode == guardian.TOOK_OVER


def test_values_reach_the_scripts_only_as_parameters() -> None:
    lay = RemoteLayout(app_dir="/opt/$(reboot)", compose_file="/opt/x'; rm -rf /.yml")
    p = guardian.SwitchPlan(
        compose_file=lay.compose_file,
        app_dir=lay.app_dir,
        restore_ref="r/a:`id`",
        restore_id=OLD,
        new_ref="r/a:$HOME",
        new_id=NEW,
        stop_timeout=2,
        health_timeout=3,
        api_port=3100,
    )
    argv = guardian.launch(lay, LOCK_ID, p)
    assert argv[:2] == ["sh", "-c"] and argv[2] == guardian.LAUNCH_SCRIPT and argv[5] == guardian.GUARDIAN_SCRIPT
    assert shlex.split(shlex.join(argv)) == argv
    for script in (guardian.GUARDIAN_SCRIPT, guardian.LAUNCH_SCRIPT, guardian.FINISH_SCRIPT):
        assert "reboot" not in script and "{" + "lock_id}" not in script
    with pytest.raises(ValueError):
        guardian.guardian_dir(lay, "../x")
    with pytest.raises(ValueError):
        guardian.set_phase("/g", "rm -rf")


def test_record_lines_are_one_json_object_per_outcome() -> None:
    lines = guardian.record_lines({"action": "rollback", "operator": "x"}).decode().splitlines()
    assert [json.loads(line)["guardian"] for line in lines] == list(guardian.OUTCOMES)
    assert all(json.loads(line)["result"] == "abandoned" for line in lines)
    assert {o: i for i, o in enumerate(guardian.OUTCOMES, 1)} == guardian.RECORD_LINES


def test_state_parse() -> None:
    s = guardian.State.parse("fired changing yes restored\n")
    assert (s.token, s.phase, s.alive, s.result) == ("fired", "changing", True, "restored")
    assert guardian.State.parse("").token == "none"


def test_a_raw_transport_error_in_a_renewal_is_noted_and_the_heartbeat_goes_on() -> None:
    # paramiko's bare EOFError of a dead link must not end the renewing thread with a traceback.
    from ghdeploy.engine.guardian.driver import Heartbeat

    class Flaky:
        fired = False
        error: str | None = None
        renewals = 0

        def renew(self) -> None:
            self.renewals += 1
            if self.renewals == 1:
                raise EOFError()

    guard = Flaky()
    with Heartbeat([guard], every=0.01):  # type: ignore[list-item]
        deadline = time.monotonic() + 10
        while guard.renewals < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert guard.renewals >= 3
    assert guard.error == "SSH connection lost (EOFError)"


def test_launch_for_the_switch_renews_the_lease_and_sets_the_phase_in_one_command(host: dict[str, str]) -> None:
    """arm_switch's one round trip: the lease renewed before the new guardian starts, the phase
    `changing` set once it runs; a guardian that already fired is never replaced (exit TOOK_OVER)."""
    lay = layout(host)
    g = arm(host, 60, None)
    before = int(Path(g, "deadline").read_text())
    proc = sh(host, guardian.launch(lay, LOCK_ID, plan(host), lease=120, phase="changing"), guardian.record_lines(BASE))
    assert proc.returncode == 0, proc.stderr
    assert int(Path(g, "deadline").read_text()) >= before + 59
    assert Path(g, "phase").read_text().strip() == "changing"
    assert Path(g, "pid").read_text().strip() == proc.stdout.decode().strip()
    # The guardian fired meanwhile (its armed token gone): nothing is launched, the driver hears TOOK_OVER.
    Path(g, "armed").rename(Path(g, "fired"))
    pid = Path(g, "pid").read_text()
    proc = sh(host, guardian.launch(lay, LOCK_ID, plan(host), lease=120, phase="changing"), guardian.record_lines(BASE))
    assert proc.returncode == guardian.TOOK_OVER
    assert Path(g, "pid").read_text() == pid
    with pytest.raises(ValueError, match="unknown guardian phase"):
        guardian.launch(lay, LOCK_ID, plan(host), phase="dancing")
