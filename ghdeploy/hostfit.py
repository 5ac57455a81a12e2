"""Will the new image run on these hosts, and fit on their disks? Pure checks, run in preflight.

A host's facts come from one remote command (remote_day2.host_facts): the docker engine's
data root, its architecture, and `df` of that root. The image's facts come from the registry
(registry.image_platforms): the platforms of the manifest or index and the compressed size of
each. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# `docker info` reports the kernel's machine name; images name the GOARCH.
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "i686": "386"}
# Layers arrive compressed and are stored unpacked; 2.5x is the usual ratio for a Node + Chromium image.
UNPACK_FACTOR = 2.5
MB = 1024 * 1024


@dataclass(frozen=True)
class MachineFacts:
    docker_root: str
    architecture: str  # as the image would name it: amd64, arm64, ...
    os: str
    free_bytes: int | None
    size_bytes: int | None

    def to_dict(self) -> dict[str, object]:
        return {
            "docker_root": self.docker_root,
            "architecture": self.architecture,
            "os": self.os,
            "free_bytes": self.free_bytes,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class PlatformImage:
    """One platform of an image in the registry."""

    os: str
    architecture: str
    variant: str | None
    compressed_bytes: int  # config + layers, as the registry stores them

    @property
    def name(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def normalise_arch(machine: str) -> str:
    return _ARCH.get(machine.strip().lower(), machine.strip().lower())


def parse_facts(text: str) -> MachineFacts | None:
    """`root|arch|os` then a `df -Pk` line (see remote_day2.host_facts)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or "|" not in lines[0]:
        return None
    root, _, rest = lines[0].partition("|")
    arch, _, os_type = rest.partition("|")
    free = size = None
    if len(lines) > 1:
        fields = lines[1].split()
        if len(fields) >= 4 and fields[1].isdigit() and fields[3].isdigit():
            size, free = int(fields[1]) * 1024, int(fields[3]) * 1024
    return MachineFacts(root, normalise_arch(arch), os_type.strip() or "linux", free, size)


def facts_from_df(docker_root: str, machine: str, df_output: str) -> MachineFacts | None:
    """Facts from a data root already known, `uname -m`, and what remote_day2.disk_of printed."""
    lines = df_output.strip().splitlines()
    return parse_facts(f"{docker_root}|{machine}|linux\n{lines[-1] if lines else ''}")


def platform_problems(facts: dict[str, MachineFacts], images: list[PlatformImage], image_label: str) -> dict[str, str]:
    """Hosts the image has no platform for, with both named."""
    offered = {(i.os, i.architecture) for i in images}
    names = ", ".join(sorted(i.name for i in images)) or "no platform"
    problems: dict[str, str] = {}
    for label, fact in facts.items():
        if (fact.os, fact.architecture) not in offered:
            problems[label] = (
                f"the host is {fact.os}/{fact.architecture} but {image_label} is built for {names}: "
                "it would not start there (exec format error)"
            )
    return problems


def needed_bytes(image: PlatformImage, reserve_mb: int) -> int:
    return int(image.compressed_bytes * UNPACK_FACTOR) + reserve_mb * MB


def disk_problems(
    facts: dict[str, MachineFacts], images: list[PlatformImage], image_label: str, reserve_mb: int
) -> dict[str, str]:
    """Hosts whose docker data root cannot hold the image (unpacked estimate + the reserve)."""
    problems: dict[str, str] = {}
    for label, fact in facts.items():
        image = next((i for i in images if (i.os, i.architecture) == (fact.os, fact.architecture)), None)
        if image is None or fact.free_bytes is None:
            continue
        need = needed_bytes(image, reserve_mb)
        if fact.free_bytes < need:
            problems[label] = (
                f"{fact.docker_root} has {fact.free_bytes // MB} MB free; {image_label} needs about "
                f"{need // MB} MB ({image.compressed_bytes // MB} MB compressed x{UNPACK_FACTOR:g} unpacked "
                f"+ DISK_RESERVE_MB {reserve_mb})"
            )
    return problems


def fit_problems(
    facts: dict[str, MachineFacts], images: list[PlatformImage], image_label: str, reserve_mb: int
) -> tuple[dict[str, str], str | None]:
    """Preflight's verdict on the hosts for this image: (problems by host, hint)."""
    wrong = platform_problems(facts, images, image_label)
    if wrong:
        wanted = sorted({f"{f.os}/{f.architecture}" for f in facts.values()})
        return wrong, (
            f"build for the hosts' platform: `ghdeploy deploy --platform {','.join(wanted)}` (or set GH_PLATFORM)"
            + ("; a fleet of mixed architectures needs a multi-arch image (docker buildx)" if len(wanted) > 1 else "")
        )
    full = disk_problems(facts, images, image_label, reserve_mb)
    if full:
        return full, "free space first: `ghdeploy prune` removes this repository's old images (see --dry-run)"
    return {}, None
