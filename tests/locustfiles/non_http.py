"""A non-HTTP User that fires Locust's request event itself (as users of gRPC, databases, ... do)."""

from locust import User, constant, task

import locust_metrics  # noqa: F401


class QueueClient(User):
    wait_time = constant(0.02)

    def fire(self, name, response_time, exception=None, response=None):
        self.environment.events.request.fire(
            request_type="queue",
            name=name,
            response_time=response_time,
            response_length=7,
            response=response,
            context={},
            exception=exception,
        )

    @task(3)
    def publish_ok(self):
        self.fire("publish", 4.5)

    @task(2)
    def publish_timeout(self):
        self.fire("publish-timeout", 30.0, exception=TimeoutError("deadline exceeded after 30 ms"))

    @task(1)
    def no_response_time(self):
        # no response time: counted as a request, not in the histogram (as in Locust's statistics)
        self.fire("fire-and-forget", None)
