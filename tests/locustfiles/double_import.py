"""Imports locust_metrics three ways; nothing may be counted twice."""

import importlib

from locust import HttpUser, constant, task

import locust_metrics
import locust_metrics as again  # noqa: F401

importlib.reload(locust_metrics)


class HealthUser(HttpUser):
    wait_time = constant(0.05)

    @task
    def health(self):
        self.client.get("/health")
