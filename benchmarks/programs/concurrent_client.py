"""Client of ``bench.py``'s concurrent-scrapes section: ``scrapers`` keep-alive connections that all send a
scrape at the same instant, ``rounds`` times.

    python concurrent_client.py PORT SCRAPERS ROUNDS FORMATS_JSON

``FORMATS_JSON``: a JSON list of ``[accept, accept_encoding]`` pairs, scraper ``i`` using pair
``i % len``. Prints, as JSON, per round and scraper ``[start, end, HTTP status, body bytes, Content-Type]``
(``time.monotonic()`` seconds, which all processes share).
"""

import http.client
import json
import sys
import threading
import time

port, scrapers, rounds, formats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
barrier = threading.Barrier(scrapers + 1)
spans = [[None] * scrapers for _ in range(rounds)]


def scraper(index):
    accept, encoding = formats[index % len(formats)]
    headers = {"Accept": accept}
    if encoding:
        headers["Accept-Encoding"] = encoding
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for round_ in range(rounds):
        barrier.wait()
        start = time.monotonic()
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        body = response.read()
        spans[round_][index] = [start, time.monotonic(), response.status, len(body),
                                response.getheader("Content-Type", "")]
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
        barrier.wait()


threads = [threading.Thread(target=scraper, args=(i,), daemon=True) for i in range(scrapers)]
for thread in threads:
    thread.start()
for _ in range(rounds):
    time.sleep(0.15)  # the loop idles between rounds
    barrier.wait()  # all scrapers of the round send at once
    barrier.wait()  # all answered
print(json.dumps(spans))
