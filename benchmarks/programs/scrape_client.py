"""Scrape client of ``bench.py``'s scrape-stall section: ``count`` scrapes of ``url``, 30 ms apart.

    python scrape_client.py URL COUNT ACCEPT

Sends Prometheus' ``Accept`` header (``ACCEPT``) and ``Accept-Encoding: gzip``; prints, as JSON, one
``[start, end, body bytes, Content-Type]`` per scrape (``time.monotonic()`` seconds, which all processes share).
"""

import json
import sys
import time
import urllib.request

url, count, accept = sys.argv[1], int(sys.argv[2]), sys.argv[3]
headers = {"Accept": accept, "Accept-Encoding": "gzip"}
spans = []
for _ in range(count):
    time.sleep(0.03)
    start = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        size = len(response.read())
        content_type = response.headers.get("Content-Type", "")
    spans.append([start, time.monotonic(), size, content_type])
print(json.dumps(spans))
