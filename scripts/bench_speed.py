"""`scripts/bench speed`: the five speed figures, each beside its baseline, measured in one run.

  1. one-host `verify` / `status` vs `ssh HOST curl -s localhost:3100/health/version`; a refused
     bad input; `--help` vs `python -c "import typer"`
  2. `verify` / `status` on 10 hosts vs 1 host (the testbed is brought to 10 hosts for this and
     back to its default 3 afterwards); TCP connections to a jump host for targets behind it
  3. fleet deploy of an image with >= 300 MB of fresh layers on 3 hosts: pulls in parallel up
     front vs pulls one host at a time (PULL_PARALLEL=1, what the rolling loop used to cost);
     once as the testbed is, once with each host's link limited to 200 Mbit/s (tc on its veth),
     as separate machines each have a link of their own
  4. per-host switch overhead of a deploy whose image is present, phase by phase
  5. the scaling model's inputs: connections and memory per host connection at 1, 3, 10 hosts

Holds the testbed lock for the whole run (tests wait), so nobody redeploys a host mid-measure.
Big images are generated here (random bytes), never stored in git, and removed from the hosts
at the end (`scripts/testbed reset-host`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTBED = REPO / "scripts" / "testbed"
ENV_FILE = Path("/var/lib/ghtb/env")
LOCK_FILE = Path("/run/ghtb.lock")
BIG_MB = 320
PY = sys.executable


# --- plumbing -------------------------------------------------------------------------------


@contextlib.contextmanager
def testbed_lock() -> Iterator[None]:
    if os.environ.get("GHTB_LOCK_HELD") == "1":
        yield
        return
    with open(LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(f"{LOCK_FILE}.holder")
            who = holder.read_text().strip() if holder.exists() else "unknown"
            print(f"bench: another run is using the testbed ({who}); waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        Path(f"{LOCK_FILE}.holder").write_text(f"scripts/bench speed pid {os.getpid()}, since {since}\n")
        os.environ["GHTB_LOCK_HELD"] = "1"
        try:
            yield
        finally:
            os.environ.pop("GHTB_LOCK_HELD", None)


def read_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in ENV_FILE.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')
    env.update(AWS_EC2_METADATA_DISABLED="true", NO_COLOR="1", PYTHONPATH=str(REPO))
    env["ECR_REGISTRY_OVERRIDE"] = "1"  # the testbed's registry stands in for ECR (process env only)
    return env


def addr(ns: str) -> str:
    return f"root@10.77.{ns[1:]}.2"


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def interleaved(cmds: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Each command `runs` times, round robin, so machine load hits every one alike."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
    return times


def busy_ms() -> float:
    """CPU time the whole machine has spent busy (every process, the testbed's hosts included)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) * 1000 / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def cpu_split(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median machine CPU and the command's own CPU (ms) per run: what the rest (sshd, the hosts'
    shells, dockerd, the app) cost is the difference."""
    import resource

    machine, own = [], []
    for _ in range(runs):
        before, mine = busy_ms(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, capture_output=True, check=False)
        after, mine_after = busy_ms(), resource.getrusage(resource.RUSAGE_CHILDREN)
        machine.append(after - before)
        own.append(1000 * (mine_after.ru_utime - mine.ru_utime + mine_after.ru_stime - mine.ru_stime))
    return statistics.median(machine), statistics.median(own)


def ghd(*args: str) -> list[str]:
    return [PY, "-m", "ghdeploy", *args]


def line(name: str, value_ms: float, base_name: str, base_ms: float, goal: str) -> None:
    print(
        f"  {name:<34} {value_ms:7.0f} ms   {base_name:<34} {base_ms:7.0f} ms   ratio {value_ms / base_ms:4.2f}  ({goal})"
    )


def sh(argv: list[str], env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, text=True, capture_output=True, check=True, **kw)  # type: ignore[call-overload]


def ssh_base(env: dict[str, str], ns: str) -> list[str]:
    return [
        "ssh",
        "-i",
        env["EC2_KEY"],
        "-o",
        f"UserKnownHostsFile={env['SSH_KNOWN_HOSTS']}",
        "-o",
        "BatchMode=yes",
        addr(ns),
    ]


def host_has(env: dict[str, str], ns: str, tool: str) -> bool:
    probe = subprocess.run([*ssh_base(env, ns), "command", "-v", tool], capture_output=True, check=False)
    return probe.returncode == 0


# --- images ---------------------------------------------------------------------------------


class Images:
    """Builds sample-app images (optionally with a big random layer) and pushes them."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.work = Path(tempfile.mkdtemp(prefix="ghdeploy-bench-speed-"))
        self.docker_env = dict(env, DOCKER_CONFIG=str(self.work / "docker-config"))
        sh(
            ["docker", "login", "-u", env["GHTB_REGISTRY_USER"], "--password-stdin", env["ECR_REGISTRY"]],
            self.docker_env,
            input=env["GHTB_REGISTRY_PASSWORD"],
        )
        self.local: list[str] = []

    def build_push(self, tag: str, big_mb: int = 0) -> str:
        context = self.work / tag
        shutil.copytree(Path(self.env["GHTB_SAMPLE_APP"]), context, ignore=shutil.ignore_patterns(".git"))
        if big_mb:
            with open(context / "big.bin", "wb") as f:  # fresh random bytes: a layer no host has
                for _ in range(big_mb):
                    f.write(os.urandom(1 << 20))
            with open(context / "Dockerfile", "a") as f:
                f.write("\nCOPY big.bin /big.bin\n")
        sha = secrets.token_hex(20)
        ref = f"{self.env['ECR_REGISTRY']}/{self.env['ECR_REPOSITORY']}:{tag}"
        args = ["--build-arg", f"COMMIT_SHA={sha}", "--build-arg", f"IMAGE_TAG={tag}"]
        sh(["docker", "build", "-q", *args, "-t", ref, str(context)], self.docker_env)
        sh(["docker", "push", "-q", ref], self.docker_env)
        self.local.append(ref)
        shutil.rmtree(context)
        return sha

    def close(self) -> None:
        for ref in self.local:
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)
        subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def deploy_json(env: dict[str, str], hosts: list[str], tag: str, pull_limit: int | None = None) -> tuple[float, dict]:
    e = dict(env, EC2_HOST=",".join(addr(h) for h in hosts), HEALTH_TIMEOUT="60")
    argv = ghd("--json", "deploy", "--deploy-only", "--tag", tag)
    if pull_limit is not None:
        e["PULL_PARALLEL"] = str(pull_limit)  # 1: the hosts pull one after another
    start = time.perf_counter()
    proc = subprocess.run(argv, env=e, capture_output=True, text=True, check=False)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: deploy of {tag} to {hosts} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return total, json.loads(proc.stdout)


# --- the figures ----------------------------------------------------------------------------


def figure_switch(env: dict[str, str], images: Images, ns: str) -> None:
    print(f"4. per-host switch overhead (one host {ns}, image already on the host, idle worker)")
    tags = [f"bench-sw-{secrets.token_hex(3)}-{n}" for n in (1, 2)]
    for tag in tags:
        images.build_push(tag)
        deploy_json(env, [ns], tag)  # pulls it; the measured runs below find it present
    runs = []
    for tag in (tags[0], tags[1], tags[0], tags[1]):
        total, doc = deploy_json(env, [ns], tag)
        (host,) = doc["deploy"]["hosts"]
        runs.append((total, doc["timings"], host["phases"], host["duration_s"]))
    phases = {name: statistics.median(r[2].get(name, 0.0) for r in runs) for name in runs[0][2]}
    # The host's whole turn in the rolling phase: its sequence plus the history record and the end
    # of pending.json written after it (the host's own duration_s stops before those).
    turn = statistics.median(r[1].get("deploy", r[3]) for r in runs)
    rest = "other (guardian arm/confirm, backups, history record, pending file)"
    other = max(0.0, turn - sum(phases.values()))
    # Not overhead: the container stop/start (switch), the app getting ready (health). The drain
    # phase counts whole as overhead (the worker is idle: there is nothing to wait for).
    excluded = {"switch", "health"}
    overhead = {name: s for name, s in phases.items() if name not in excluded}
    overhead[rest] = other
    total_overhead = sum(overhead.values())
    print(
        f"  the host's turn in the rolling phase {turn:.2f}s (its sequence {statistics.median(r[3] for r in runs):.2f}s)"
    )
    print(f"  phases (median of {len(runs)}):")
    for name, seconds in {**phases, rest: other}.items():
        kind = "excluded" if name in excluded else "overhead"
        share = 100 * seconds / turn if turn else 0
        print(f"    {name:<38} {seconds * 1000:7.0f} ms  {share:4.0f}%  {kind}")
    print(f"  per-host overhead {total_overhead * 1000:.0f} ms (goal <= 500 ms)")
    t = {k: statistics.median(r[1].get(k, 0.0) for r in runs) for k in runs[0][1]}
    print("  whole command (median): " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()))
    print(f"  whole command wall time {statistics.median(r[0] for r in runs):.2f}s")


def installed_ghdeploy(work: Path) -> str | None:
    """This checkout installed the way an operator installs it (`pipx install`: a venv of its own,
    no editable-install finder, none of this machine's site-packages .pth files); None if pip fails."""
    venv = work / "venv"
    subprocess.run([PY, "-m", "venv", str(venv)], check=True, capture_output=True)
    argv = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)]
    lock = REPO / "requirements" / "test.lock"
    if lock.is_file():
        argv[5:5] = ["-c", str(lock)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"  (could not install the checkout in a venv: {proc.stderr.strip()[-300:]})")
        return None
    return str(venv / "bin" / "ghdeploy")


def figure_one_host(env: dict[str, str], ns: str, runs: int, work: Path) -> None:
    tool = "curl" if host_has(env, ns, "curl") else "wget"
    fetch = ["curl", "-s"] if tool == "curl" else ["wget", "-qO-"]
    base = [*ssh_base(env, ns), *fetch, "http://localhost:3100/health/version"]
    sha = json.loads(subprocess.run(base, capture_output=True, text=True, check=True).stdout)["commit_sha"]
    e = dict(env, EC2_HOST=addr(ns))
    cmds = {
        "base": base,
        "verify": ghd("verify", "--expect", sha),
        "status": ghd("status"),
        "bad": ghd("verify", "--expect", "not-a-sha"),
        "typer": [PY, "-c", "import typer"],
        "help": ghd("--help"),
    }
    installed = installed_ghdeploy(work)
    if installed:
        cmds["verify installed"] = ["env", "-u", "PYTHONPATH", installed, "verify", "--expect", sha]
        cmds["status installed"] = ["env", "-u", "PYTHONPATH", installed, "status"]
    times = interleaved(cmds, e, runs)
    m = {k: median_ms(v) for k, v in times.items()}
    print(f"1. one host ({ns}), medians of {runs} interleaved runs; baseline: OpenSSH + the host's {tool}")
    line("ghdeploy verify (this checkout)", m["verify"], f"ssh host {tool} /health/version", m["base"], "goal <= 1.3")
    line("ghdeploy status (this checkout)", m["status"], f"ssh host {tool} /health/version", m["base"], "goal <= 1.3")
    if installed:
        for what in ("verify", "status"):
            line(f"ghdeploy {what} (installed, venv)", m[f"{what} installed"], "same", m["base"], "goal <= 1.3")
    line("ghdeploy --help", m["help"], "python -c 'import typer'", m["typer"], "about 1")
    print(
        f"  {'verify --expect not-a-sha (refused)':<34} {m['bad']:7.0f} ms   (goal < 250 ms, exit 2, nothing imported)"
    )


def figure_flat(env: dict[str, str], images: Images, runs: int) -> None:
    hosts = [f"h{n}" for n in range(1, 11)]
    print("2. flat in the number of hosts (testbed brought to 10 hosts for this)")
    up = subprocess.run([str(TESTBED), "up"], env=dict(env, GHTB_HOSTS="10"), capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"bench: testbed up with 10 hosts failed:\n{up.stderr[-2000:]}")
    env10 = read_env()
    tag = f"bench-flat-{secrets.token_hex(3)}"
    images.build_push(tag)
    total, _ = deploy_json(env10, hosts, tag)
    print(f"  (deployed {tag} to 10 hosts in {total:.1f}s)")
    sha = sh([*ssh_base(env10, "h1"), "curl", "-s", "http://localhost:3100/health/version"]).stdout
    sha = json.loads(sha)["commit_sha"]
    cmds = {}
    for n in (1, 3, 10):
        e_hosts = ",".join(addr(h) for h in hosts[:n])
        cmds[f"verify {n}"] = ["env", f"EC2_HOST={e_hosts}", *ghd("verify", "--expect", sha)]
        cmds[f"status {n}"] = ["env", f"EC2_HOST={e_hosts}", *ghd("status")]
    times = interleaved(cmds, env10, runs)
    m = {k: median_ms(v) for k, v in times.items()}
    for what in ("verify", "status"):
        print(
            f"  {what}: 1 host {m[f'{what} 1']:.0f} ms, 3 hosts {m[f'{what} 3']:.0f} ms, 10 hosts {m[f'{what} 10']:.0f} ms"
        )
        line(f"{what} on 10 hosts", m[f"{what} 10"], f"{what} on 1 host", m[f"{what} 1"], "goal <= 1.5")
    # The testbed's hosts are namespaces on this machine: their sshd, shells and engines share its
    # CPUs with ghdeploy. The CPU a run costs in all, over the CPUs there are, is a wall time no
    # schedule can beat; separate machines would each do their own share at once.
    cpus = os.cpu_count() or 1
    print(f"  CPU per run on this machine ({cpus} CPUs; medians of {runs}): ghdeploy itself + the hosts' side")
    for what in ("verify", "status"):
        for n in (1, 10):
            machine, own = cpu_split(cmds[f"{what} {n}"], env10, runs)
            print(
                f"    {what} {n:2} host(s): {machine:5.0f} ms = ghdeploy {own:4.0f} + hosts {machine - own:4.0f};"
                f" floor on {cpus} CPUs {machine / cpus:4.0f} ms"
            )
    figure_connections(env10, hosts)


def figure_connections(env: dict[str, str], hosts: list[str]) -> None:
    """5's inputs: memory and threads per open host connection, and the jump host's connections."""
    sys.path.insert(0, str(REPO))
    os.environ.update({k: env[k] for k in ("EC2_KEY", "SSH_KNOWN_HOSTS")})
    import threading

    from ghdeploy.engine.connect import close_all, connect_all
    from ghdeploy.hosts import Host, parse_host
    from ghdeploy.progress import NullReporter
    from ghdeploy.transports.ssh import SSHSettings, connect

    def rss_kb() -> int:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
        return 0

    settings = SSHSettings(key_file=Path(env["EC2_KEY"]), known_hosts=Path(env["SSH_KNOWN_HOSTS"]))
    connect(parse_host(addr(hosts[0])), settings).close()  # imports and first-use allocations
    time.sleep(0.5)  # let the closed connection's transport thread end before counting threads
    print("5. per host connection, measured in this process (paramiko, one transport thread each)")
    for n in (1, 3, 10):
        before, threads = rss_kb(), threading.active_count()
        start = time.perf_counter()
        conns, errors = connect_all([parse_host(addr(h)) for h in hosts[:n]], settings, NullReporter())
        took = time.perf_counter() - start
        grew, more = rss_kb() - before, threading.active_count() - threads
        close_all(conns)
        print(
            f"  {n:>2} hosts: connected in {took * 1000:.0f} ms, {len(conns)} connection(s), "
            f"{len(errors)} error(s), +{grew / n:.0f} KiB RSS and +{more / n:.1f} threads per connection"
        )
    # Targets behind one jump host (h1): j1 under several names, and h1's own sshd seen from h1.
    config = Path(tempfile.mkdtemp()) / "ssh_config"
    names = [f"behind-{n}" for n in range(4)]
    config.write_text(
        f"Host {' '.join(names)}\n  HostName 10.77.100.2\n  ProxyJump root@10.77.1.2\n"
        "Host itself\n  HostName 10.77.1.2\n  ProxyJump root@10.77.1.2\n"
    )
    jump_settings = SSHSettings(
        key_file=Path(env["EC2_KEY"]), known_hosts=Path(env["SSH_KNOWN_HOSTS"]), ssh_config=config
    )
    conns, errors = connect_all([Host(n, "root") for n in [*names, "itself"]], jump_settings, NullReporter())
    out = sh(["ss", "-Htnp", "state", "established", "dst", "10.77.1.2:22"]).stdout
    tcp = sum(1 for row in out.splitlines() if f"pid={os.getpid()}," in row)
    close_all(conns)
    print(
        f"  {len(conns)} targets behind jump host h1 ({len(errors)} error(s)): {tcp} TCP connection(s) to it "
        f"(OpenSSH ProxyJump without ControlMaster: {len(conns)})"
    )


@contextlib.contextmanager
def shaped_links(hosts: list[str], mbit: int | None) -> Iterator[None]:
    """Each host's link from this machine (its veth, egress toward the host) limited to `mbit`:
    separate machines each have a link of their own, and a host's pull is then bound by it, not
    by the CPUs and disk the testbed's hosts share. None: the links as they are."""
    if mbit is None:
        yield
        return
    devices = [f"veth-{h}" for h in hosts]
    try:
        for dev in devices:
            sh(
                [
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    f"{mbit}mbit",
                    "burst",
                    "256kb",
                    "latency",
                    "100ms",
                ]
            )
        yield
    finally:
        for dev in devices:
            subprocess.run(["tc", "qdisc", "del", "dev", dev, "root"], capture_output=True, check=False)


def figure_fleet_pull(env: dict[str, str], images: Images, mbit: int | None = None) -> None:
    hosts = ["h1", "h2", "h3"]
    links = (
        f"each host's link limited to {mbit} Mbit/s"
        if mbit
        else "links as they are (the hosts share 2 CPUs and 1 disk)"
    )
    print(f"3. fleet deploy, 3 hosts, image with {BIG_MB} MB of fresh random layer (new for each run); {links}")
    results = {}
    for name, limit in (
        ("pulls in parallel first (PULL_PARALLEL 16)", None),
        ("pulls one host at a time (PULL_PARALLEL 1)", 1),
    ):
        tag = f"bench-big-{secrets.token_hex(3)}"
        started = time.perf_counter()
        images.build_push(tag, BIG_MB)
        print(f"  (built and pushed {tag} in {time.perf_counter() - started:.0f}s)")
        with shaped_links(hosts, mbit):
            total, doc = deploy_json(env, hosts, tag, limit)
        results[name] = (total, doc["timings"])
        t = doc["timings"]
        print(
            f"  {name:<42} total {total:6.1f}s  pull phase {t.get('pull', 0):6.1f}s  rolling switch {t.get('deploy', 0):6.1f}s"
        )
    (par_total, par), (seq_total, seq) = results.values()
    one_pull = seq.get("pull", 0) / 3
    switches = par.get("deploy", 0)
    print(
        f"  one pull ~{one_pull:.1f}s (sequential pull phase / 3) + three switches {switches:.1f}s = "
        f"{one_pull + switches:.1f}s; the parallel run's deploy phases took {par.get('pull', 0) + switches:.1f}s; "
        f"sequential {seq.get('pull', 0) + seq.get('deploy', 0):.1f}s; whole commands {par_total:.1f}s vs {seq_total:.1f}s"
    )


def machine() -> str:
    cpus = os.cpu_count()
    mem = next((r.split()[1] for r in Path("/proc/meminfo").read_text().splitlines() if r.startswith("MemTotal")), "?")
    load = os.getloadavg()[0]
    return (
        f"{platform.node()}: {platform.system()} {platform.release()}, {cpus} CPU(s), {int(mem) // 1024} MiB, "
        f"Python {platform.python_version()}, load average {load:.1f} at start"
    )


def run(runs: int) -> None:
    if not ENV_FILE.exists():
        sys.exit("bench: testbed not running (run scripts/testbed up)")
    with testbed_lock():
        print(f"scripts/bench speed on {machine()}")
        print(time.strftime("  %Y-%m-%d %H:%M UTC", time.gmtime()))
        env = read_env()
        images = Images(env)
        try:
            figure_switch(env, images, "h1")
            figure_one_host(env, "h1", runs, images.work)
            figure_fleet_pull(env, images)
            figure_fleet_pull(env, images, mbit=200)
            figure_flat(env, images, runs)
        finally:
            images.close()
            restore = subprocess.run([str(TESTBED), "up"], env=dict(os.environ, GHTB_HOSTS="3"), capture_output=True)
            for ns in ("h1", "h2", "h3"):
                subprocess.run([str(TESTBED), "reset-host", ns], capture_output=True, check=False)
            print(f"  (testbed back to 3 hosts: up exit {restore.returncode}; h1..h3 reset)")
