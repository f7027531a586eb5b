"""The end-to-end target of ``bench.py`` when nginx is missing (and in ``--smoke``): a minimal keep-alive HTTP/1.1
server on 127.0.0.1, one fixed 13-byte response per request head, written in one send.

    python gevent_target.py PORT
"""

import sys

from gevent.server import StreamServer

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\nhello, locust"


def handle(sock, address):
    pending = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        pending += data
        heads = pending.count(b"\r\n\r\n")
        if heads:
            sock.sendall(RESPONSE * heads)
            pending = pending[pending.rfind(b"\r\n\r\n") + 4 :]


StreamServer(("127.0.0.1", int(sys.argv[1])), handle).serve_forever()
