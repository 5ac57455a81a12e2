"""A container's HostConfig and networks as `docker create` options (none depend on the image).

One small step per group of settings, in a fixed order: two containers created alike give equal
lists, which is how a new container is checked against the one it replaces (check.py).
"""

from __future__ import annotations

import csv
import io
from typing import Any

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
# Every option host_options() may give (check.py tells them from the Config options).
HOST_FLAGS = tuple(
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


def _pairs(prefix: str, mapping: dict[str, Any] | None) -> list[str]:
    """`PREFIXkey=value` for each entry of a mapping, sorted by key (docker keeps no order)."""
    return [f"{prefix}{key}={value}" for key, value in sorted((mapping or {}).items())]


def _csv_field(text: str) -> str:
    """One field of a `--mount` value (docker parses it as CSV: commas and quotes need quoting)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()


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
    parts += _pairs("volume-label=", volume.get("Labels"))
    driver = volume.get("DriverConfig") or {}
    if driver.get("Name"):
        parts.append(f"volume-driver={driver['Name']}")
    parts += _pairs("volume-opt=", driver.get("Options"))
    tmpfs = mount.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        parts.append(f"tmpfs-size={tmpfs['SizeBytes']}")
    if tmpfs.get("Mode"):
        parts.append(f"tmpfs-mode={int(tmpfs['Mode']):o}")
    return ",".join(_csv_field(p) for p in parts)


def _unsupported(hc: dict[str, Any]) -> list[str]:
    return [
        f"HostConfig.{key} ({what}) cannot be carried over by docker create"
        for key, what in _UNSUPPORTED_HOST.items()
        if hc.get(key)
    ]


def _table_options(hc: dict[str, Any]) -> list[str]:
    """The settings with a one-to-one flag (scalars, lists, switches), CPUs and shared memory."""
    opts = [f"{flag}={hc.get(key)}" for key, flag in _SCALAR_HOST.items() if hc.get(key) not in (None, "", 0)]
    if hc.get("NanoCpus"):
        opts.append(f"--cpus={_nano_cpus(hc['NanoCpus'])}")
    ipc = hc.get("IpcMode")
    if hc.get("ShmSize") and ipc not in ("host", "none") and not str(ipc).startswith("container:"):
        opts.append(f"--shm-size={hc['ShmSize']}b")
    opts += [f"{flag}={value}" for key, flag in _LIST_HOST.items() for value in hc.get(key) or []]
    opts += [flag for key, flag in _BOOL_HOST.items() if hc.get(key)]
    return opts


def _device_options(hc: dict[str, Any]) -> list[str]:
    opts = [
        f"{flag}={item.get('Path')}:{item.get('Rate')}"
        for key, flag in _DEVICE_RATES.items()
        for item in hc.get(key) or []
    ]
    opts += [f"--blkio-weight-device={i.get('Path')}:{i.get('Weight')}" for i in hc.get("BlkioWeightDevice") or []]
    for device in hc.get("Devices") or []:
        opts.append(
            f"--device={device.get('PathOnHost')}:{device.get('PathInContainer')}:"
            f"{device.get('CgroupPermissions') or 'rwm'}"
        )
    return opts


def _limit_options(hc: dict[str, Any]) -> list[str]:
    """Memory, process and kernel limits, tmpfs, runtime and isolation."""
    opts: list[str] = []
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
    opts += _pairs("--sysctl=", hc.get("Sysctls"))
    opts += _pairs("--storage-opt=", hc.get("StorageOpt"))
    for path, options in sorted((hc.get("Tmpfs") or {}).items()):
        opts.append(f"--tmpfs={path}:{options}" if options else f"--tmpfs={path}")
    if hc.get("Runtime"):
        opts.append(f"--runtime={hc['Runtime']}")
    if hc.get("Isolation") not in (None, "", "default"):
        opts.append(f"--isolation={hc['Isolation']}")
    return opts


def _log_and_restart_options(hc: dict[str, Any]) -> list[str]:
    opts: list[str] = []
    log = hc.get("LogConfig") or {}
    if log.get("Type"):
        opts.append(f"--log-driver={log['Type']}")
    opts += _pairs("--log-opt=", log.get("Config"))
    policy = hc.get("RestartPolicy") or {}
    restart = policy.get("Name") or ""
    if restart == "on-failure" and policy.get("MaximumRetryCount"):
        opts.append(f"--restart=on-failure:{policy['MaximumRetryCount']}")
    elif restart and restart != "no":
        opts.append(f"--restart={restart}")
    return opts


def _publish_options(hc: dict[str, Any]) -> list[str]:
    opts = []
    for container_port, bindings in sorted((hc.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            host_ip, host_port = binding.get("HostIp") or "", binding.get("HostPort") or ""
            prefix = f"{host_ip}:" if host_ip else ""
            opts.append(f"--publish={prefix}{host_port}:{container_port}")
    return opts


def _mount_options(container: dict[str, Any], hc: dict[str, Any]) -> list[str]:
    """Binds as given (-v, in _table_options), --mount entries as given, and every other volume
    (anonymous, or declared by the image) by its name, so the new container gets the same data,
    not a fresh one."""
    covered = {str(b).split(":")[1] for b in hc.get("Binds") or [] if ":" in str(b)}
    opts = []
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
    return opts


def host_options(container: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """The options from HostConfig and the networks (none depend on the image).

    Returns (options, extra network connects, problems). Two containers created alike give
    equal results, which is how a new container is checked against the one it replaces.
    """
    hc = container.get("HostConfig") or {}
    opts = [
        *_table_options(hc),
        *_device_options(hc),
        *_limit_options(hc),
        *_log_and_restart_options(hc),
        *_publish_options(hc),
        *_mount_options(container, hc),
    ]
    networks, net_problems = _network_options(container, opts)
    return opts, networks, [*_unsupported(hc), *net_problems]


def _endpoint_options(name: str, ep: dict[str, Any], short_id: str, alias_flag: str, problems: list[str]) -> list[str]:
    """One network endpoint's aliases and fixed addresses; what cannot be carried goes to `problems`."""
    out = [f"{alias_flag}={a}" for a in sorted(ep.get("Aliases") or []) if a != short_id]
    ipam = ep.get("IPAMConfig") or {}
    if ipam.get("IPv4Address"):
        out.append(f"--ip={ipam['IPv4Address']}")
    if ipam.get("IPv6Address"):
        out.append(f"--ip6={ipam['IPv6Address']}")
    if ipam.get("LinkLocalIPs"):
        problems.append(f"NetworkSettings.Networks.{name}.IPAMConfig.LinkLocalIPs cannot be carried over")
    if ep.get("Links"):
        problems.append(f"NetworkSettings.Networks.{name}.Links (legacy --link) cannot be carried over")
    if ep.get("DriverOpts"):
        problems.append(f"NetworkSettings.Networks.{name}.DriverOpts cannot be carried over")
    return out


def _network_options(container: dict[str, Any], opts: list[str]) -> tuple[list[list[str]], list[str]]:
    """The first network goes into `opts` (--network, its aliases); the others are returned as
    `docker network connect` options, with the problems."""
    hc = container.get("HostConfig") or {}
    mode = hc.get("NetworkMode") or "default"
    settings = (container.get("NetworkSettings") or {}).get("Networks") or {}
    short_id = str(container.get("Id") or "")[:12]
    problems: list[str] = []
    primary = "bridge" if mode == "default" else mode
    if mode != "default":
        opts.append(f"--network={mode}")
    if primary in settings and mode not in ("host", "none") and not mode.startswith("container:"):
        opts += _endpoint_options(primary, settings[primary] or {}, short_id, "--network-alias", problems)
    extra: list[list[str]] = []
    for name in sorted(settings):
        if name == primary:
            continue
        extra.append([*_endpoint_options(name, settings[name] or {}, short_id, "--alias", problems), name])
    return extra, problems
