"""Deterministic latencies against the demo target's /delay endpoint, for exact slow counts."""

from locust import HttpUser, constant, task

import locust_metrics  # noqa: F401


class SlowFastUser(HttpUser):
    wait_time = constant(0.05)

    @task
    def always_fast(self):
        self.client.get("/health", name="always-fast")

    @task
    def always_slow(self):
        # 1100 ms > the default threshold of 1000 ms
        self.client.get("/delay?ms=1100", name="always-slow")

    @task
    def per_endpoint(self):
        # 300 ms: fast by default, slow with --metrics-slow-threshold-for per-endpoint=250
        self.client.get("/delay?ms=300", name="per-endpoint")

    @task
    def by_regex(self):
        # 1100 ms: slow by default, not slow with --metrics-slow-threshold-for 're:regex-.*=5000'
        self.client.get("/delay?ms=1100", name="regex-lenient")
