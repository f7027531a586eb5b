"""Child of ``bench.py``'s memory section: what ``import locust_metrics`` + ``install()`` + ``names`` endpoints'
data + a scrape of each format add to a fresh Locust process.

    python memory_child.py MODE NAMES ACCEPT DATA [NATIVE]

``MODE``: ``rss`` (prints ``{"rss_added_bytes": ...}``, the resident memory gained since Locust's own
imports) or ``traced`` (prints tracemalloc's ``data_bytes``, ``retained_bytes`` after the scrapes and
``scrape_peak_bytes``). ``ACCEPT``: the scrape's ``Accept`` header. ``DATA``: ``typical`` (3 status codes
and 5 error labels per endpoint) or ``worst`` (also 20 error labels of 120+ characters per endpoint, and with
native histograms on, each endpoint's native histogram at its bucket bound, every bucket of the default 640 populated at schema 6). ``NATIVE``: ``on`` for native histograms (``install(native_histograms=True)``), ``off`` (the default).
"""

import gc
import json
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # the repository
import locust  # noqa: E402,F401  (gevent patching, Locust's own imports: the baseline)
import psutil  # noqa: E402
from locust import User, task  # noqa: E402
from locust.env import Environment  # noqa: E402


class U(User):
    @task
    def nothing(self):
        pass


class Response:
    def __init__(self, status_code):
        self.status_code = status_code


mode, names = sys.argv[1], int(sys.argv[2])
accept, worst = sys.argv[3], sys.argv[4] == "worst"
native = sys.argv[5:6] == ["on"]
env = Environment(user_classes=[U])
process = psutil.Process()
gc.collect()
before = process.memory_info().rss
if mode == "traced":
    import locust_metrics

    exporter = locust_metrics.install(env, port=0, native_histograms=native)
    gc.collect()
    tracemalloc.start()
else:
    import locust_metrics

    exporter = locust_metrics.install(env, port=0, native_histograms=native)
responses = [(Response(200), None), (Response(404), "HTTP 404"), (Response(500), "HTTP 500"),
             (Response(200), "ConnectionResetError"), (Response(200), "check failed: missing field"),
             (Response(200), "check failed: slow")]
if worst:  # every endpoint at the per-endpoint cap of error labels, each as long as a label may be
    responses += [(Response(200), f"check {k:02d} failed: " + "x" * 120) for k in range(20)]
for i in range(names):
    for j, (response, error) in enumerate(responses):
        for k in range(3):
            exporter.recorder.on_request(
                request_type="GET" if i % 4 else "POST", name=f"/api/v1/resource/{i}/items",
                response_time=7.0 * (j + k + 1) + i % 50, response_length=1024,
                response=response, exception=error,
            )
if worst and native:  # every native histogram at its bound at schema 6: the most its dense store keeps
    from locust_metrics.native import threshold_ms

    bound = exporter.recorder.native[1]  # buckets at most (default native.DEFAULT_MAX_BUCKETS)
    for (method, name), entry in exporter.recorder.endpoints.items():
        entry.fold()
        taken = set(entry.native.buckets)
        low = min(taken)
        for k in range(low, low + bound):  # every bucket populated: the longest protobuf lists too
            if k not in taken:
                exporter.recorder.on_request(request_type=method, name=name, response_time=threshold_ms(k, 6),
                                             response_length=1024, response=responses[0][0], exception=None)
        entry.fold()
        got = (entry.native.schema, entry.native.populated, entry.native.width)
        assert got == (6, bound, bound), got
assert len(exporter.recorder.endpoints) == names
if mode == "traced":
    data = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
for _ in range(2):
    exporter.renderer.respond(accept, "gzip", pause=None)
    exporter.renderer.respond(None, None, pause=None)
gc.collect()
if mode == "traced":
    retained, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"data_bytes": data, "retained_bytes": retained, "scrape_peak_bytes": peak}))
else:
    print(json.dumps({"rss_added_bytes": process.memory_info().rss - before}))
