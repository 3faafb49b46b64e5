"""The per-frame `Result` under its former name: it lives in `device.result`, shared by the pipeline, detectors
and adapter (which never import `device.pipeline`). Callers outside these packages still import it from here.
"""

from device.result import Result

__all__ = ["Result"]
