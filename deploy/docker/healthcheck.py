"""The image's HEALTHCHECK: healthy while this process serves Segue's metrics.

``segue run --metrics-port`` serves /metrics from the moment the flow is set up; a process that
hangs before that, or died, fails this check. The port is ``SEGUE_METRICS_PORT`` (9400 unless
set). Exit 0 healthy, 1 not (the reason on stderr), as Docker expects.
"""

import os
import sys
import urllib.request

port = int(os.environ.get("SEGUE_METRICS_PORT", "9400"))
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
        body = r.read()
except OSError as e:
    print(f"unhealthy: no metrics on 127.0.0.1:{port} ({e})", file=sys.stderr)
    sys.exit(1)
if b"segue_events_total" not in body:
    print(f"unhealthy: 127.0.0.1:{port}/metrics is not Segue's", file=sys.stderr)
    sys.exit(1)
