"""The target of ``percentiles.py``: an HTTP server on 127.0.0.1 whose answers take a known distribution of
time, simulated with ``gevent.sleep`` (no CPU, so hundreds of requests in flight keep their latencies).

    python latency_target.py PORT SEED

Paths (milliseconds; "lognormal(m, s)": median ``m``, log-space standard deviation ``s``):

* ``/lognormal``: lognormal(120, 0.6135): median 120 ms, p99 about 500 ms (``exp(ln 120 + 2.326 s)``).
* ``/bimodal``: 90% cache hits lognormal(5, 0.3), 10% misses lognormal(300, 0.3) (as in
  ``tests/locustfiles/latency_distributions.py``, the accuracy test's).

Prints ``listening`` once it accepts connections.
"""

import math
import os
import random
import sys

import gevent

# the demo shop's server: gevent's WSGI server with TCP_NODELAY (else Nagle's algorithm and the client's delayed
# acknowledgements add about 40 ms to every keep-alive response)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
from demo_target import DemoServer  # noqa: E402

rng = random.Random(int(sys.argv[2]))


def lognormal_ms(median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def bimodal_ms() -> float:
    return lognormal_ms(5, 0.3) if rng.random() < 0.9 else lognormal_ms(300, 0.3)


DELAYS = {"/lognormal": lambda: lognormal_ms(120, 0.6135), "/bimodal": bimodal_ms}


def app(environ, start_response):
    delay = DELAYS.get(environ["PATH_INFO"])
    if delay is None:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    gevent.sleep(delay() / 1000)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


server = DemoServer(("127.0.0.1", int(sys.argv[1])), app, log=None)
server.start()
print("listening", flush=True)
server.serve_forever()
