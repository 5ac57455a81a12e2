"""What a standalone container is made of, as `docker create` options, from its `docker inspect`.

A targeted worker is recreated on a new image with everything it was created with, minus what
came from its old image. Every field of `docker inspect` is either carried over exactly (as a
`docker create` option, a `docker network connect` or the environment), known to be derived by
the engine (MaskedPaths, the container's own short ID as hostname, ...), or named in `problems`:
a container with a problem is refused in preflight, before any host is touched, instead of being
recreated without it.

The environment is kept apart from the options: it may hold secrets, so it travels on stdin and
never appears in any argv (see remote_commands.create_container).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

# A name `sh` can export (values that need the process environment must have one).
SHELL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names the docker CLI itself reads from its environment: a multi-line value with such a name
# cannot be handed to `docker create -e NAME` without changing what the CLI does.
CLI_NAMES = {
    *("PATH", "HOME", "TMPDIR", "SHELL", "IFS", "ENV", "PWD", "OLDPWD", "PS1", "PS2", "PS4", "OPTIND"),
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"),
    *("GODEBUG", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GOTRACEBACK", "SSL_CERT_FILE", "SSL_CERT_DIR"),
}
CLI_PREFIXES = ("DOCKER_", "LD_", "XDG_")


@dataclass(frozen=True)
class ContainerSpec:
    """How to create a container like this one on another image.

    `options`: `docker create` options from the container's own settings (HostConfig, labels,
    user, ...), none of them secret. `env`: KEY=VALUE entries the container set itself, not
    inherited from its image. `networks`: `docker network connect` options for each network
    beyond the first. `problems`: what cannot be carried over exactly.
    """

    name: str
    options: list[str]
    env: list[str]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    networks: list[list[str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def env_file_entries(self) -> list[str]:
        """Entries a docker env-file carries exactly (one line each)."""
        return [e for e in self.env if _env_file_safe(e)]

    @property
    def process_env_entries(self) -> list[str]:
        """Entries that need `-e NAME` with the value in the docker CLI's environment (multi-line)."""
        return [e for e in self.env if not _env_file_safe(e)]

    def command(self) -> list[str]:
        """What follows the image in `docker create`: entrypoint arguments, then the command."""
        args: list[str] = []
        if self.entrypoint:
            args += self.entrypoint[1:]
        if self.cmd is not None:
            args += self.cmd
        return args


def _env_file_safe(entry: str) -> bool:
    # docker's env-file parser: one entry a line, leading blanks and a trailing \r dropped,
    # `#` starts a comment, a name without `=` is looked up in the CLI's environment.
    key, eq, value = entry.partition("=")
    return (
        bool(eq)
        and bool(key)
        and not key.startswith("#")
        and not any(c.isspace() for c in key)
        and "\n" not in value
        and "\r" not in value
    )


def _csv_field(text: str) -> str:
    """One field of a `--mount` value (docker parses it as CSV: commas and quotes need quoting)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()


def _duration(ns: int) -> str:
    return f"{int(ns)}ns"


def _nano_cpus(value: int) -> str:
    whole, frac = divmod(int(value), 1_000_000_000)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".")


def mount_option(mount: dict[str, Any]) -> str:
    """A HostConfig.Mounts entry as a `--mount` value."""
    parts = [f"type={mount.get('Type') or 'volume'}"]
    if mount.get("Source"):
        parts.append(f"source={mount['Source']}")
    parts.append(f"target={mount.get('Target') or ''}")
    if mount.get("ReadOnly"):
        parts.append("readonly")
    if mount.get("Consistency") and mount["Consistency"] != "default":
        parts.append(f"consistency={mount['Consistency']}")
    bind = mount.get("BindOptions") or {}
    if bind.get("Propagation"):
        parts.append(f"bind-propagation={bind['Propagation']}")
    if bind.get("NonRecursive"):
        parts.append("bind-nonrecursive=true")
    volume = mount.get("VolumeOptions") or {}
    if volume.get("NoCopy"):
        parts.append("volume-nocopy")
    for key, value in sorted((volume.get("Labels") or {}).items()):
        parts.append(f"volume-label={key}={value}")
    driver = volume.get("DriverConfig") or {}
    if driver.get("Name"):
        parts.append(f"volume-driver={driver['Name']}")
    for key, value in sorted((driver.get("Options") or {}).items()):
        parts.append(f"volume-opt={key}={value}")
    tmpfs = mount.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        parts.append(f"tmpfs-size={tmpfs['SizeBytes']}")
    if tmpfs.get("Mode"):
        parts.append(f"tmpfs-mode={int(tmpfs['Mode']):o}")
    return ",".join(_csv_field(p) for p in parts)


# HostConfig fields that need no option: set by the engine, or meaningless for a new container.
_DERIVED_HOST = {
    "ContainerIDFile",
    "ConsoleSize",
    "MaskedPaths",
    "ReadonlyPaths",
    "Isolation",
    "Runtime",
}
# Simple HostConfig values: field -> flag (carried when not zero/empty).
_SCALAR_HOST = {
    "VolumeDriver": "--volume-driver",
    "CgroupnsMode": "--cgroupns",
    "IpcMode": "--ipc",
    "PidMode": "--pid",
    "UTSMode": "--uts",
    "UsernsMode": "--userns",
    "CgroupParent": "--cgroup-parent",
    "CpuShares": "--cpu-shares",
    "Memory": "--memory",
    "MemoryReservation": "--memory-reservation",
    "MemorySwap": "--memory-swap",
    "CpuPeriod": "--cpu-period",
    "CpuQuota": "--cpu-quota",
    "CpuRealtimePeriod": "--cpu-rt-period",
    "CpuRealtimeRuntime": "--cpu-rt-runtime",
    "CpusetCpus": "--cpuset-cpus",
    "CpusetMems": "--cpuset-mems",
    "BlkioWeight": "--blkio-weight",
    "OomScoreAdj": "--oom-score-adj",
}
_LIST_HOST = {
    "Binds": "--volume",
    "VolumesFrom": "--volumes-from",
    "CapAdd": "--cap-add",
    "CapDrop": "--cap-drop",
    "Dns": "--dns",
    "DnsOptions": "--dns-option",
    "DnsSearch": "--dns-search",
    "ExtraHosts": "--add-host",
    "GroupAdd": "--group-add",
    "SecurityOpt": "--security-opt",
    "DeviceCgroupRules": "--device-cgroup-rule",
}
_BOOL_HOST = {
    "AutoRemove": "--rm",
    "Privileged": "--privileged",
    "PublishAllPorts": "--publish-all",
    "ReadonlyRootfs": "--read-only",
}
_DEVICE_RATES = {
    "BlkioDeviceReadBps": "--device-read-bps",
    "BlkioDeviceWriteBps": "--device-write-bps",
    "BlkioDeviceReadIOps": "--device-read-iops",
    "BlkioDeviceWriteIOps": "--device-write-iops",
}
# Settings `docker create` cannot express (or only Windows has): refused when set.
_UNSUPPORTED_HOST = {
    "Links": "legacy --link",
    "DeviceRequests": "--gpus / device requests",
    "KernelMemory": "kernel memory limit",
    "KernelMemoryTCP": "kernel TCP memory limit",
    "CpuCount": "Windows CPU count",
    "CpuPercent": "Windows CPU percent",
    "IOMaximumIOps": "Windows IO limit",
    "IOMaximumBandwidth": "Windows IO limit",
    "Cgroup": "cgroup of another container",
    "Annotations": "annotations",
}


def host_options(container: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:  # noqa: C901 (one flat branch per docker option)
    """The options from HostConfig and the networks (none depend on the image).

    Returns (options, extra network connects, problems). Two containers created alike give
    equal results, which is how a new container is checked against the one it replaces.
    """
    hc = container.get("HostConfig") or {}
    opts: list[str] = []
    problems: list[str] = []
    for key, what in _UNSUPPORTED_HOST.items():
        if hc.get(key):
            problems.append(f"HostConfig.{key} ({what}) cannot be carried over by docker create")
    for key, flag in _SCALAR_HOST.items():
        value = hc.get(key)
        if value not in (None, "", 0):
            opts.append(f"{flag}={value}")
    if hc.get("NanoCpus"):
        opts.append(f"--cpus={_nano_cpus(hc['NanoCpus'])}")
    if (
        hc.get("ShmSize")
        and hc.get("IpcMode") not in ("host", "none")
        and not str(hc.get("IpcMode")).startswith("container:")
    ):
        opts.append(f"--shm-size={hc['ShmSize']}b")
    for key, flag in _LIST_HOST.items():
        for value in hc.get(key) or []:
            opts.append(f"{flag}={value}")
    for key, flag in _BOOL_HOST.items():
        if hc.get(key):
            opts.append(flag)
    for key, flag in _DEVICE_RATES.items():
        for item in hc.get(key) or []:
            opts.append(f"{flag}={item.get('Path')}:{item.get('Rate')}")
    for item in hc.get("BlkioWeightDevice") or []:
        opts.append(f"--blkio-weight-device={item.get('Path')}:{item.get('Weight')}")
    for device in hc.get("Devices") or []:
        opts.append(
            f"--device={device.get('PathOnHost')}:{device.get('PathInContainer')}:"
            f"{device.get('CgroupPermissions') or 'rwm'}"
        )
    if hc.get("MemorySwappiness") is not None and hc["MemorySwappiness"] >= 0:
        opts.append(f"--memory-swappiness={hc['MemorySwappiness']}")
    if hc.get("OomKillDisable"):
        opts.append("--oom-kill-disable")
    if hc.get("PidsLimit"):
        opts.append(f"--pids-limit={hc['PidsLimit']}")
    if hc.get("Init") is not None:
        opts.append(f"--init={'true' if hc['Init'] else 'false'}")
    for ulimit in sorted(hc.get("Ulimits") or [], key=lambda u: str(u.get("Name"))):
        opts.append(f"--ulimit={ulimit.get('Name')}={ulimit.get('Soft')}:{ulimit.get('Hard')}")
    for key, value in sorted((hc.get("Sysctls") or {}).items()):
        opts.append(f"--sysctl={key}={value}")
    for key, value in sorted((hc.get("StorageOpt") or {}).items()):
        opts.append(f"--storage-opt={key}={value}")
    for path, options in sorted((hc.get("Tmpfs") or {}).items()):
        opts.append(f"--tmpfs={path}:{options}" if options else f"--tmpfs={path}")
    if hc.get("Runtime"):
        opts.append(f"--runtime={hc['Runtime']}")
    if hc.get("Isolation") not in (None, "", "default"):
        opts.append(f"--isolation={hc['Isolation']}")
    log = hc.get("LogConfig") or {}
    if log.get("Type"):
        opts.append(f"--log-driver={log['Type']}")
    for key, value in sorted((log.get("Config") or {}).items()):
        opts.append(f"--log-opt={key}={value}")
    policy = hc.get("RestartPolicy") or {}
    restart = policy.get("Name") or ""
    if restart == "on-failure" and policy.get("MaximumRetryCount"):
        opts.append(f"--restart=on-failure:{policy['MaximumRetryCount']}")
    elif restart and restart != "no":
        opts.append(f"--restart={restart}")
    for container_port, bindings in sorted((hc.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            host_ip, host_port = binding.get("HostIp") or "", binding.get("HostPort") or ""
            prefix = f"{host_ip}:" if host_ip else ""
            opts.append(
                f"--publish={prefix}{host_port}:{container_port}"
                if host_port
                else f"--publish={prefix}:{container_port}"
            )
    # Mounts: binds as given (-v), --mount entries as given, and every other volume (anonymous,
    # or declared by the image) by its name, so the new container gets the same data, not a fresh one.
    covered = {str(b).split(":")[1] for b in hc.get("Binds") or [] if ":" in str(b)}
    for mount in hc.get("Mounts") or []:
        opts.append(f"--mount={mount_option(mount)}")
        covered.add(mount.get("Target"))
    covered |= set((hc.get("Tmpfs") or {}).keys())
    for mount in container.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Destination") not in covered and mount.get("Name"):
            anonymous = {"Type": "volume", "Source": mount["Name"], "Target": mount["Destination"]}
            if mount.get("RW") is False:
                anonymous["ReadOnly"] = True
            opts.append(f"--mount={mount_option(anonymous)}")
    networks, net_problems = _network_options(container, opts)
    problems += net_problems
    return opts, networks, problems


def _network_options(container: dict[str, Any], opts: list[str]) -> tuple[list[list[str]], list[str]]:
    hc = container.get("HostConfig") or {}
    mode = hc.get("NetworkMode") or "default"
    settings = (container.get("NetworkSettings") or {}).get("Networks") or {}
    short_id = str(container.get("Id") or "")[:12]
    problems: list[str] = []

    def endpoint_options(name: str, ep: dict[str, Any], alias_flag: str, ip_flag: str, ip6_flag: str) -> list[str]:
        out = [f"{alias_flag}={a}" for a in sorted(ep.get("Aliases") or []) if a != short_id]
        ipam = ep.get("IPAMConfig") or {}
        if ipam.get("IPv4Address"):
            out.append(f"{ip_flag}={ipam['IPv4Address']}")
        if ipam.get("IPv6Address"):
            out.append(f"{ip6_flag}={ipam['IPv6Address']}")
        if ipam.get("LinkLocalIPs"):
            problems.append(f"NetworkSettings.Networks.{name}.IPAMConfig.LinkLocalIPs cannot be carried over")
        if ep.get("Links"):
            problems.append(f"NetworkSettings.Networks.{name}.Links (legacy --link) cannot be carried over")
        if ep.get("DriverOpts"):
            problems.append(f"NetworkSettings.Networks.{name}.DriverOpts cannot be carried over")
        return out

    primary = "bridge" if mode == "default" else mode
    if mode != "default":
        opts.append(f"--network={mode}")
    if primary in settings and mode not in ("host", "none") and not mode.startswith("container:"):
        opts += endpoint_options(primary, settings[primary] or {}, "--network-alias", "--ip", "--ip6")
    extra: list[list[str]] = []
    for name in sorted(settings):
        if name == primary:
            continue
        ep = settings[name] or {}
        extra.append([*endpoint_options(name, ep, "--alias", "--ip", "--ip6"), name])
    return extra, problems


def _differs(container_value: Any, image_value: Any) -> bool:
    return bool(container_value) and container_value != image_value


def config_options(container: dict[str, Any], image: dict[str, Any]) -> tuple[list[str], list[str]]:  # noqa: C901 (one flat branch per docker option)
    """The options from Config that differ from the image's own (user, workdir, healthcheck, ...)."""
    config = container.get("Config") or {}
    hc = container.get("HostConfig") or {}
    image_config = image.get("Config") or {}
    opts: list[str] = []
    problems: list[str] = []
    mode = hc.get("NetworkMode") or "default"
    shares_uts = mode == "host" or mode.startswith("container:") or hc.get("UTSMode") == "host"
    short_id = str(container.get("Id") or "")[:12]
    if config.get("Hostname") and config["Hostname"] != short_id and not shares_uts:
        opts.append(f"--hostname={config['Hostname']}")
    if config.get("Domainname"):
        opts.append(f"--domainname={config['Domainname']}")
    if _differs(config.get("User"), image_config.get("User")):
        opts.append(f"--user={config['User']}")
    if _differs(config.get("WorkingDir"), image_config.get("WorkingDir")):
        opts.append(f"--workdir={config['WorkingDir']}")
    if _differs(config.get("StopSignal"), image_config.get("StopSignal")):
        opts.append(f"--stop-signal={config['StopSignal']}")
    if config.get("StopTimeout") is not None:
        opts.append(f"--stop-timeout={config['StopTimeout']}")
    if config.get("Tty"):
        opts.append("--tty")
    if config.get("OpenStdin"):
        opts.append("--interactive")
    if config.get("MacAddress"):
        opts.append(f"--mac-address={config['MacAddress']}")
    if config.get("NetworkDisabled"):
        problems.append("Config.NetworkDisabled cannot be carried over by docker create")
    published = set((hc.get("PortBindings") or {}).keys())
    image_ports = set((image_config.get("ExposedPorts") or {}).keys())
    for port in sorted(set((config.get("ExposedPorts") or {}).keys()) - image_ports - published):
        opts.append(f"--expose={port}")
    health = config.get("Healthcheck") or {}
    if health and health != (image_config.get("Healthcheck") or {}):
        test = health.get("Test") or []
        if test[:1] == ["NONE"]:
            opts.append("--no-healthcheck")
        else:
            if test[:1] == ["CMD-SHELL"] and len(test) == 2:
                opts.append(f"--health-cmd={test[1]}")
            elif test and test != (image_config.get("Healthcheck") or {}).get("Test"):
                problems.append(
                    f"Config.Healthcheck.Test {test[:1]} form cannot be carried over (docker create takes only a shell command)"
                )
            for key, flag in (
                ("Interval", "--health-interval"),
                ("Timeout", "--health-timeout"),
                ("StartPeriod", "--health-start-period"),
                ("StartInterval", "--health-start-interval"),
            ):
                if health.get(key):
                    opts.append(f"{flag}={_duration(health[key])}")
            if health.get("Retries"):
                opts.append(f"--health-retries={health['Retries']}")
    return opts, problems


def own_env(container: dict[str, Any], image: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The container's own environment (entries repeating its image's ENV are the image's), and problems."""
    image_env = set((image.get("Config") or {}).get("Env") or [])
    env = [e for e in ((container.get("Config") or {}).get("Env") or []) if e not in image_env]
    problems = []
    for entry in env:
        key, eq, _ = entry.partition("=")
        if _env_file_safe(entry):
            continue
        if not eq:
            problems.append(f"Config.Env entry {key!r} has no value")
        elif not SHELL_NAME_RE.match(key):
            problems.append(f"Config.Env {key}: a multi-line value needs a shell variable name")
        elif key in CLI_NAMES or key.startswith(CLI_PREFIXES):
            problems.append(f"Config.Env {key}: a multi-line value under a name the docker CLI itself reads")
    return env, problems


def own_labels(container: dict[str, Any], image: dict[str, Any]) -> dict[str, str]:
    image_labels = (image.get("Config") or {}).get("Labels") or {}
    labels = (container.get("Config") or {}).get("Labels") or {}
    return {k: v for k, v in labels.items() if image_labels.get(k) != v}


def from_inspect(container: dict[str, Any], image: dict[str, Any]) -> ContainerSpec:
    """The spec of a container from its `docker inspect` and its image's `docker image inspect`."""
    config = container.get("Config") or {}
    image_config = image.get("Config") or {}
    labels = own_labels(container, image)
    env, env_problems = own_env(container, image)
    h_opts, networks, h_problems = host_options(container)
    c_opts, c_problems = config_options(container, image)
    label_opts = [f"--label={k}={v}" for k, v in sorted(labels.items())]
    entrypoint = config.get("Entrypoint")
    own_entrypoint = entrypoint != image_config.get("Entrypoint")
    cmd = config.get("Cmd")
    if own_entrypoint:
        c_opts.append(f"--entrypoint={entrypoint[0] if entrypoint else ''}")
    name = str(container.get("Name") or "").lstrip("/")
    return ContainerSpec(
        name=name,
        options=[*label_opts, *h_opts, *c_opts],
        env=env,
        entrypoint=entrypoint if own_entrypoint else None,
        # `--entrypoint` clears the image's CMD, so with our own entrypoint the command is always passed.
        cmd=cmd if own_entrypoint or cmd != image_config.get("Cmd") else None,
        networks=networks,
        labels=labels,
        problems=[f"{name}: {p}" for p in (*env_problems, *h_problems, *c_problems)],
    )


def differences(intended: ContainerSpec, container: dict[str, Any], image: dict[str, Any]) -> list[str]:
    """How a newly created container (on `image`) differs from what it was created to be; [] if not at all.

    HostConfig and networks must match exactly; the container's own environment, labels and
    command must be there, and anything else in them must come from the new image.
    """
    found: list[str] = []
    h_opts, networks, _ = host_options(container)
    intended_host = [o for o in intended.options if not o.startswith("--label=")]
    missing = [o for o in intended_host if o.startswith(_HOST_FLAGS) and o not in h_opts]
    extra = [o for o in h_opts if o not in intended.options]
    if missing or extra:
        found.append(f"options differ (missing {missing}, unexpected {extra})")
    if networks != intended.networks:
        found.append(f"networks differ ({networks} != {intended.networks})")
    c_opts, _ = config_options(container, image)
    for option in intended.options:
        if option.startswith(_CONFIG_FLAGS) and option not in c_opts and not _image_has(option, image):
            found.append(f"{option.split('=', 1)[0]} not carried over")
    env = (container.get("Config") or {}).get("Env") or []
    image_env = set((image.get("Config") or {}).get("Env") or [])
    # Names only: the values may be secrets.
    missing_env = sorted(e.split("=", 1)[0] for e in set(intended.env) - set(env))
    if missing_env:
        found.append("environment entries missing: " + ", ".join(missing_env))
    unexpected = sorted(e.split("=", 1)[0] for e in env if e not in image_env and e not in intended.env)
    if unexpected:
        found.append("unexpected environment entries: " + ", ".join(unexpected))
    labels = (container.get("Config") or {}).get("Labels") or {}
    if any(labels.get(k) != v for k, v in intended.labels.items()):
        found.append("labels differ")
    config = container.get("Config") or {}
    argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    if intended.entrypoint is not None or intended.cmd is not None:
        image_config = image.get("Config") or {}
        expected = (
            intended.entrypoint if intended.entrypoint is not None else image_config.get("Entrypoint") or []
        ) + (intended.cmd if intended.cmd is not None else image_config.get("Cmd") or [])
        if argv != expected:
            found.append(f"command differs ({argv} != {expected})")
    return found


_CONFIG_FLAGS = (
    "--hostname=",
    "--domainname=",
    "--user=",
    "--workdir=",
    "--stop-signal=",
    "--stop-timeout=",
    "--tty",
    "--interactive",
    "--mac-address=",
    "--expose=",
    "--no-healthcheck",
    "--health-",
    "--entrypoint=",
)
_HOST_FLAGS = tuple(
    {
        *(f + "=" for f in _SCALAR_HOST.values()),
        *(f + "=" for f in _LIST_HOST.values()),
        *_BOOL_HOST.values(),
        *(f + "=" for f in _DEVICE_RATES.values()),
        "--cpus=",
        "--shm-size=",
        "--blkio-weight-device=",
        "--device=",
        "--memory-swappiness=",
        "--oom-kill-disable",
        "--pids-limit=",
        "--init=",
        "--ulimit=",
        "--sysctl=",
        "--storage-opt=",
        "--tmpfs=",
        "--runtime=",
        "--isolation=",
        "--log-driver=",
        "--log-opt=",
        "--restart=",
        "--publish=",
        "--mount=",
        "--network=",
        "--network-alias=",
        "--ip=",
        "--ip6=",
    }
)


def _image_has(option: str, image: dict[str, Any]) -> bool:
    """A config option the new image itself already sets (so the container shows no difference)."""
    image_config = image.get("Config") or {}
    flag, _, value = option.partition("=")
    field_of = {"--user": "User", "--workdir": "WorkingDir", "--stop-signal": "StopSignal"}
    if flag in field_of:
        return image_config.get(field_of[flag]) == value
    if flag == "--expose":
        return value in (image_config.get("ExposedPorts") or {})
    if flag.startswith("--health") or flag == "--no-healthcheck":
        return True  # compared as a whole: the healthcheck equals the new image's (nothing to carry)
    return flag == "--entrypoint"  # the entrypoint is compared through the whole command


def env_script(spec: ContainerSpec, env_file: str, delimiter: str) -> str:
    """The `sh` text (sent on stdin, run with eval) that writes the env-file and exports the rest.

    Single-line entries go to a private env-file through a quoted here-document; multi-line
    values (a PEM key, JSON) are exported for `docker create -e NAME`, which takes the value from
    the CLI's own environment. Neither puts a value in any argv.
    """
    import shlex

    lines = spec.env_file_entries
    if any(line == delimiter for line in lines):
        raise ValueError("here-document delimiter collides with an environment entry")
    text = f"cat > {shlex.quote(env_file)} <<'{delimiter}' || exit 1\n"
    text += "".join(f"{line}\n" for line in lines)
    text += f"{delimiter}\n"
    for entry in spec.process_env_entries:
        key, _, value = entry.partition("=")
        text += f"{key}={shlex.quote(value)}; export {key}\n"
    return text


def env_names(spec: ContainerSpec) -> list[str]:
    """The names passed as `-e NAME` (values in the CLI's environment)."""
    return [e.partition("=")[0] for e in spec.process_env_entries]
