"""Third-party gateways, found through the `textback.gateways` entry-point group.

A plugin package declares, in its pyproject.toml:

    [project.entry-points."textback.gateways"]
    mygateway = "my_package:create"

`create(options)` receives the `gateway.plugin.options` mapping from the
YAML file as it is (the plugin validates it, raising ValueError with a
readable message) and returns an object with the Gateway interface: `name`,
`async send(text)`, `async check()`; optionally `async close()`, and
`callback_endpoints()` to receive webhooks (sms_gateway.callbacks.Endpoint).
examples/textback-gateway-example is a complete one.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any, Mapping

from sms_gateway.base import Gateway

GROUP = "textback.gateways"
BUILT_IN = frozenset({"asterisk", "log", "twilio", "telnyx", "kannel", "http"})


class PluginError(Exception):
    """The plugin is missing, broken, or refused its options."""


def available() -> dict[str, EntryPoint]:
    """Installed plugins by name; none may take a built-in gateway's name."""
    return {ep.name: ep for ep in entry_points(group=GROUP) if ep.name not in BUILT_IN}


def load_gateway(name: str, options: Mapping[str, Any]) -> Gateway:
    """Build the gateway of plugin `name` from its options."""
    if name in BUILT_IN:
        raise PluginError(f"{name!r} is a built-in gateway: set gateway.type: {name}")
    found = available()
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise PluginError(f"no gateway plugin named {name!r} is installed (installed: {installed})")
    try:
        factory = found[name].load()
    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, reported as such
        raise PluginError(f"gateway plugin {name!r} failed to load: {type(exc).__name__}: {exc}") from exc
    try:
        gateway = factory(dict(options))
    except ValueError as exc:
        raise PluginError(f"gateway plugin {name!r}: {exc}") from exc
    missing = [attr for attr in ("name", "send", "check") if not hasattr(gateway, attr)]
    if missing:
        raise PluginError(f"gateway plugin {name!r} returned an object without {', '.join(missing)}")
    return gateway
