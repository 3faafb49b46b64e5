"""The Raspberry Pi camera through picamera2; the ISP scales frames to the model's input size."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from device.capture.base import Frame
from device.errors import SourceError


class CameraSource:
    """RGB frames of `size` (width, height) at up to `fps` frames per second."""

    def __init__(self, size: tuple[int, int], fps: float = 5.0, camera_index: int = 0) -> None:
        try:
            from picamera2 import Picamera2  # only on the Pi: needs libcamera bindings
        except ImportError as exc:
            raise SourceError(f"the camera source needs picamera2 and libcamera ({exc})") from exc
        self.size, self.fps = size, fps
        self._cam: Any = Picamera2(camera_index)
        # "RGB888" in picamera2 is B, G, R in memory order; it is flipped to RGB below.
        config = self._cam.create_video_configuration(
            main={"size": size, "format": "RGB888"}, controls={"FrameRate": fps}
        )
        self._cam.configure(config)
        self._cam.start()
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        period = 1.0 / self.fps
        while not self._closed:
            started = time.monotonic()
            image = self._cam.capture_array("main")[..., 2::-1].copy()
            yield Frame(image, origin=f"camera:{time.time():.3f}")
            time.sleep(max(0.0, period - (time.monotonic() - started)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cam.stop()
            self._cam.close()
