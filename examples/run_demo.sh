#!/usr/bin/env bash
# Run the example load test end to end: install locust-metrics, start the demo shop on
# 127.0.0.1:8080, run Locust headless against it with live Prometheus metrics on
# http://127.0.0.1:9646/metrics, and stop the demo shop again.
#
#     bash examples/run_demo.sh                     # 1 minute, 20 users (examples/locust.conf)
#     DEMO_RUN_TIME=15s bash examples/run_demo.sh   # shorter
#     bash examples/run_demo.sh -u 50 --csv demo    # extra arguments go to locust
#
# While it runs, in another terminal:
#
#     curl -s http://127.0.0.1:9646/metrics | grep '^locust_requests_total'
#
# Environment:
#     DEMO_RUN_TIME                  Locust's --run-time (default 1m)
#     LOCUST_METRICS_SKIP_INSTALL=1  use the installed locust-metrics; skip `pip install .`
#     PYTHON                         Python interpreter to use (default python3)
#
# Locust exits with 0 here even though the demo shop fails some requests on purpose (404s for
# discontinued products, 500s at checkout); pass --exit-code-on-error 1 to get Locust's default.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
RUN_TIME="${DEMO_RUN_TIME:-1m}"
TARGET_HOST=127.0.0.1
TARGET_PORT=8080
METRICS_URL="http://127.0.0.1:${LOCUST_METRICS_PORT:-9646}/metrics"
READY_TIMEOUT_S=15

if [[ "${LOCUST_METRICS_SKIP_INSTALL:-0}" != "1" ]]; then
    echo "run_demo: installing locust-metrics from $(pwd) ..."
    "$PYTHON" -m pip install -q .
fi

target_log="$(mktemp "${TMPDIR:-/tmp}/demo_target.XXXXXX")"
target_pid=""
locust_pid=""

# stop PID [SECONDS]: SIGTERM, then SIGKILL if it is still running after SECONDS (default 5).
stop() {
    local pid="$1" tenths=$((${2:-5} * 10))
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while ((tenths-- > 0)) && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    if [[ -n "$locust_pid" ]]; then
        stop "$locust_pid" 40  # Locust stops its users and writes its statistics on SIGTERM
    fi
    if [[ -n "$target_pid" ]] && kill -0 "$target_pid" 2>/dev/null; then
        stop "$target_pid"
        echo "run_demo: demo target stopped"
    fi
    rm -f "$target_log"
}
trap cleanup EXIT
trap 'echo; echo "run_demo: interrupted, stopping ..."; exit 130' INT
trap 'echo "run_demo: terminated, stopping ..."; exit 143' TERM

echo "run_demo: starting the demo target on http://$TARGET_HOST:$TARGET_PORT ..."
"$PYTHON" examples/demo_target.py --host "$TARGET_HOST" --port "$TARGET_PORT" >"$target_log" 2>&1 &
target_pid=$!

# Ready when our process says it listens (so not another server already on the port) and /health answers.
deadline=$((SECONDS + READY_TIMEOUT_S))
until grep -q "demo target listening on" "$target_log" 2>/dev/null &&
    "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://$TARGET_HOST:$TARGET_PORT/health" 2>/dev/null; do
    if ! kill -0 "$target_pid" 2>/dev/null; then
        echo "run_demo: the demo target exited before it was ready (is port $TARGET_PORT taken?):" >&2
        cat "$target_log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "run_demo: the demo target did not answer /health within ${READY_TIMEOUT_S}s:" >&2
        cat "$target_log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "run_demo: $(head -n 1 "$target_log")"

echo "run_demo: running Locust for $RUN_TIME; Prometheus metrics are served on $METRICS_URL"
# In the background, so that Ctrl-C or a SIGTERM to this script stops Locust cleanly (see cleanup).
"$PYTHON" -m locust --config examples/locust.conf --run-time "$RUN_TIME" --exit-code-on-error 0 "$@" &
locust_pid=$!
status=0
wait "$locust_pid" || status=$?
locust_pid=""
echo "run_demo: Locust exited with status $status"
exit "$status"
