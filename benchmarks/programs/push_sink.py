"""The Pushgateway stand-in of ``push_stall.py``: a plain HTTP server on 127.0.0.1 (a free port, printed on the
first line) that reads every PUT and answers 200, so that only the pushing side is measured.

    python push_sink.py
"""

import http.server


class Sink(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
