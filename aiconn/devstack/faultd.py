"""The fault injector as a process with a control port, for `aiconn dev up`.

The process-based stack (`aiconn dev up` without `--demo`: vLLM and the gateway as host processes)
keeps running after the command ends, so the injector between the gateway and vLLM cannot live
inside that process. `POST /fault` with a JSON body
`{"delay": seconds, "refuse": bool}` turns its knobs; `GET /fault` reads them.

    python -m aiconn.devstack.faultd --upstream http://127.0.0.1:8001 --port P --control-port C
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiconn.devstack.injector import FaultInjector


def serve(upstream: str, port: int, control_port: int) -> None:
    injector = FaultInjector(upstream, port=port)

    class Control(BaseHTTPRequestHandler):
        def _reply(self, body: dict[str, Any], code: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply({"delay": injector.delay, "refuse": injector.refuse})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                injector.delay = float(body.get("delay", injector.delay))
                injector.refuse = bool(body.get("refuse", injector.refuse))
            except (ValueError, TypeError, AttributeError) as err:
                self._reply({"error": f"expected {{'delay': s, 'refuse': bool}}: {err}"}, 400)
                return
            self.do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    control = ThreadingHTTPServer(("127.0.0.1", control_port), Control)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with injector:
        threading.Thread(target=control.serve_forever, daemon=True).start()
        print(f"injector {injector.url} -> {upstream}; control :{control_port}", flush=True)
        stop.wait()
    control.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    serve(args.upstream, args.port, args.control_port)


if __name__ == "__main__":
    main()
