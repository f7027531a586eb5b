"""Child of ``native_histograms.py --instructions``: fires ``n`` realistic request events through one variant's
``events.request`` (run under callgrind there; runs the same without it).

    python native_instructions_child.py VARIANT N

``VARIANT``: ``empty`` (no listener), ``off`` / ``on`` (locust-metrics' recorder attached as ``install()`` does,
native histograms off / on, default schema and bucket bound), ``naive`` (``bench.naive_listener``). The events are
``bench._events(2048, 50)``, each fired once before the loop (first sightings), then ``N`` events in turn, every
entry folded after each 2,048 (with native histograms on, the fold buckets the response times kept); the
objects made before the loop are frozen (``gc.freeze()``).
"""

import gc
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, ".."))  # benchmarks/ (bench)
sys.path.insert(0, os.path.join(_HERE, "..", ".."))  # the repository (locust_metrics), first
import bench  # noqa: E402

variant, n = sys.argv[1], int(sys.argv[2])
env, recorder = bench._environment("plugin", native=variant == "on") if variant in ("off", "on") else bench._environment(variant)
hook = env.events.request
events = bench._events(2048, 50)
fire = hook.fire
for kwargs in events:  # first sightings: the same in both runs
    fire(**kwargs)
gc.collect()
gc.freeze()
folds = [] if recorder is None else [e.fold for e in recorder.endpoints.values()]
for i in range(n):
    fire(**events[i % 2048])
    if i % 2048 == 2047:  # what a scrape does first, once per pass: the deferred work counts
        for fold in folds:
            fold()
