"""The inference service as a process a container stand-in runs: `/healthz` answers "ok" with a frame count.

usage: python inference_standin.py PORT. SIGSTOP hangs it for real (connections queue, nothing answers),
as a wedged interpreter would; only a restart helps.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> int:
    frames = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            frames["n"] += 10
            body = json.dumps({"status": "ok", "model_version": "1.0.0", "frames": frames["n"],
                               "pid": os.getpid()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
