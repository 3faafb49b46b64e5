"""Reading the server's side of an enrollment, as the device itself may."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def get_device(server_url: str, device_id: str, secret: str) -> dict[str, Any]:
    """The server's record of a device, read with the device's own secret."""
    request = urllib.request.Request(f"{server_url}/api/v1/devices/{device_id}",
                                     headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test server
        return dict(json.loads(response.read()))
