"""The target of ``percentiles.py``: an HTTP server on 127.0.0.1 whose answers take a known distribution of
time, simulated with ``gevent.sleep`` (no CPU, so hundreds of requests in flight keep their latencies).

    python latency_target.py PORT SEED

Paths (milliseconds; "lognormal(m, s)": median ``m``, log-space standard deviation ``s``):

* ``/lognormal``: lognormal(120, 0.6135): median 120 ms, p99 about 500 ms (``exp(ln 120 + 2.326 s)``).
* ``/bimodal``: 70% cache hits lognormal(5, 0.3), 30% misses lognormal(200, 0.4).

Prints ``listening`` once it accepts connections.
"""

import math
import random
import sys

import gevent
from gevent.pywsgi import WSGIServer

rng = random.Random(int(sys.argv[2]))


def lognormal_ms(median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def bimodal_ms() -> float:
    return lognormal_ms(5, 0.3) if rng.random() < 0.7 else lognormal_ms(200, 0.4)


DELAYS = {"/lognormal": lambda: lognormal_ms(120, 0.6135), "/bimodal": bimodal_ms}


def app(environ, start_response):
    delay = DELAYS.get(environ["PATH_INFO"])
    if delay is None:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    gevent.sleep(delay() / 1000)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


server = WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None)
server.start()
print("listening", flush=True)
server.serve_forever()
