# Image of the docker-compose demo (demo target, Locust master and workers, webhook logger): Locust with
# locust-metrics installed from this repository. Also fine for your own tests: mount your locustfile and run
#   docker run --rm -p 8089:8089 -p 9646:9646 -v "$PWD:/mnt" locust-metrics-demo:dev locust -f /mnt/locustfile.py
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The plugin first (its layer is rebuilt only when the package changes). Locust is pinned for a
# reproducible demo; pyproject.toml states the versions the plugin supports.
COPY pyproject.toml README.md ./
COPY locust_metrics ./locust_metrics
RUN pip install "locust==2.47.0" . \
    && python -c "import locust_metrics, locust; print('locust-metrics', locust_metrics.__version__, 'locust', locust.__version__)"

# The demo's files.
COPY examples ./examples
COPY deploy/alertmanager/webhook_logger.py ./deploy/alertmanager/webhook_logger.py

RUN useradd --create-home --uid 1000 locust
USER locust

# 8089: Locust web UI, 5557: master <-> workers, 9646: /metrics, 8080: demo target, 9095: webhook logger
EXPOSE 8089 5557 9646 8080 9095
CMD ["locust", "--help"]
