"""What a standalone container is made of, as `docker create` options, from its `docker inspect`.

A targeted worker is recreated on a new image with everything it was created with, minus what
came from its old image. Every field of `docker inspect` is either carried over exactly (as a
`docker create` option, a `docker network connect` or the environment), known to be derived by
the engine (MaskedPaths, the container's own short ID as hostname, ...), or named in `problems`:
a container with a problem is refused in preflight, before any host is touched, instead of being
recreated without it.

The environment is kept apart from the options: it may hold secrets, so it travels on stdin and
never appears in any argv (see remote_commands.create_container).

spec.py: the spec and its environment; host_config.py: HostConfig and networks as options;
capture.py: the spec from `docker inspect`; check.py: a new container against its spec.
"""

from ghdeploy.container_spec.capture import config_options, from_inspect, own_labels
from ghdeploy.container_spec.check import differences
from ghdeploy.container_spec.host_config import host_options, mount_option
from ghdeploy.container_spec.spec import ContainerSpec, env_names, env_script, own_env

__all__ = [
    "ContainerSpec",
    "config_options",
    "differences",
    "env_names",
    "env_script",
    "from_inspect",
    "host_options",
    "mount_option",
    "own_env",
    "own_labels",
]
