"""A small demo web shop to point Locust at: the target of the bundled example load test.

Run it from the repository root::

    python examples/demo_target.py                      # http://127.0.0.1:8080
    python examples/demo_target.py --port 8081 --seed 42

It prints ``demo target listening on http://HOST:PORT`` once it accepts connections and stops cleanly
on SIGTERM or Ctrl-C. It only needs the standard library and gevent (which Locust already installs):
a plain WSGI application served by :class:`gevent.pywsgi.WSGIServer`. Latencies are simulated with
:func:`gevent.sleep`, so a single process serves hundreds of concurrent requests with the designed
latencies instead of queueing them; the simulated work costs no CPU. Request and response bodies are
JSON.

Endpoints (latencies are server-side; "median" means a log-normal distribution around that value)
------------------------------------------------------------------------------------------------------

``GET /``
    Home page. 15-25 ms (median 20 ms).
``POST /login``
    Body ``{"username": ..., "password": ...}``; answers ``{"token": ..., "username": ...}``.
    401 when the password is empty, 400 when the body is not such a JSON object. Median 40 ms.
    Send the token as ``Authorization: Bearer <token>`` to the cart and checkout endpoints.
``GET /products?page=N``
    A JSON list of up to 20 products (``per_page`` up to 100), ``[]`` after the last page (48 pages).
    Median 30 ms.
``GET /products/<id>``
    One product. **404 for ids divisible by 25** (discontinued products, never listed) and for ids
    outside 1-1000. Median 25 ms.
``GET /search?q=TEXT``
    Products whose name contains TEXT: ``{"query", "count", "results": [...]}``; 400 without ``q``.
    Median 60 ms with a heavier tail (p99 about 250 ms, at most 900 ms).
``POST /cart``
    Body ``{"product_id": N, "quantity": N}`` (quantity defaults to 1); answers the cart
    ``{"items": [...], "total": ...}``. Needs a token (401 otherwise); 404 for an unknown product.
    Median 30 ms.
``GET /cart``
    The cart, as above. Needs a token. Median 30 ms.
``POST /checkout``
    Places an order for the cart and empties it: ``{"order_id", "items", "total"}``. Needs a token;
    400 when the cart is empty. Median 150 ms. **About 3% answer HTTP 500**
    ``{"error": "payment provider timeout"}`` after a 300 ms wait (the cart is kept).
``GET /reports/sales``
    **The slow endpoint**: always between 1100 and 1500 ms (uniform), so always above locust-metrics'
    default slow threshold of 1000 ms.
``GET /health``
    ``{"status": "ok"}`` at once (no simulated latency): use it to wait for the server.
``GET /delay?ms=N&status=S`` (POST too)
    Deterministic endpoint for tests: sleeps exactly N milliseconds (default 0, at most 60000; gevent's
    timers add well under 2 ms) and answers status S (default 200, 200-599) with
    ``{"delayed_ms": N, "status": S}`` (no body for 204 and 304).

Any other path answers 404, a known path with another method answers 405; errors are
``{"error": "..."}``. ``--seed N`` makes the simulated latencies and failures reproducible for a given
order of requests. ``make_server()`` builds the (not yet started) server for use from Python, e.g. in
tests::

    server = make_server("127.0.0.1", 0, seed=1)
    server.start()            # binds; server.server_port is the chosen port
    ...
    server.stop()
"""

from __future__ import annotations

import argparse
import http
import json
import math
import random
import re
import signal
import socket
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import gevent
from gevent.pywsgi import WSGIServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

CATALOG_SIZE = 1000
"""Product ids run from 1 to this number."""

DISCONTINUED_EVERY = 25
"""Products whose id is a multiple of this are discontinued: ``GET /products/<id>`` answers 404."""

PAGE_SIZE = 20  # products per page of GET /products (per_page may ask for up to MAX_PAGE_SIZE)
MAX_PAGE_SIZE = 100
MAX_SEARCH_RESULTS = 20
MAX_SESSIONS = 10_000
"""Most logged-in sessions kept (least recently used ones are forgotten), so memory stays bounded."""

MAX_BODY_BYTES = 64 * 1024  # larger request bodies answer 413
MAX_DELAY_MS = 60_000  # longest sleep of GET /delay
CHECKOUT_FAILURE_RATE = 0.03  # share of POST /checkout answering 500 "payment provider timeout" ...
CHECKOUT_FAILURE_DELAY_MS = 300.0  # ... after this long

JSONValue = Any
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Latency:
    """A simulated latency: log-normal around ``median_ms``, clipped to ``[low_ms, high_ms]``.

    ``sigma`` is the standard deviation of the underlying normal distribution: 0.15 is tight, 0.6 gives
    a long tail (p99 is ``median * exp(2.33 * sigma)`` before clipping).
    """

    median_ms: float
    sigma: float
    low_ms: float
    high_ms: float

    def sample_ms(self, rng: random.Random) -> float:
        """One latency in milliseconds drawn from ``rng``."""
        value = rng.lognormvariate(math.log(self.median_ms), self.sigma)
        return min(max(value, self.low_ms), self.high_ms)


LATENCY = {
    "home": Latency(20, 0.12, 15, 25),
    "login": Latency(40, 0.2, 25, 120),
    "products": Latency(30, 0.25, 15, 150),
    "product": Latency(25, 0.25, 12, 120),
    "search": Latency(60, 0.6, 20, 900),
    "cart": Latency(30, 0.25, 15, 150),
    "checkout": Latency(150, 0.3, 80, 600),
}
"""Simulated latency of each endpoint (``/reports/sales``, ``/health`` and ``/delay`` are special)."""

SALES_REPORT_MS = (1100.0, 1500.0)
"""``GET /reports/sales`` takes a uniform time in this range (milliseconds): always slow."""

_ADJECTIVES = ["classic", "compact", "deluxe", "ergonomic", "lightweight", "rugged", "smart", "vintage",
               "wireless", "organic"]
_NOUNS = ["backpack", "blender", "camera", "desk lamp", "headphones", "kettle", "keyboard", "mug",
          "sneakers", "umbrella", "water bottle", "watch"]
_CATEGORIES = {"backpack": "outdoor", "blender": "kitchen", "camera": "electronics", "desk lamp": "home",
               "headphones": "electronics", "kettle": "kitchen", "keyboard": "electronics", "mug": "kitchen",
               "sneakers": "apparel", "umbrella": "outdoor", "water bottle": "outdoor", "watch": "apparel"}


class HTTPError(Exception):
    """Raised by handlers to answer an HTTP error with a JSON body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


def product(product_id: int) -> dict[str, JSONValue]:
    """The catalog entry of ``product_id`` (deterministic: the same on every run)."""
    noun = _NOUNS[product_id % len(_NOUNS)]
    adjective = _ADJECTIVES[(product_id * 7) % len(_ADJECTIVES)]
    return {
        "id": product_id,
        "name": f"{adjective} {noun} {product_id}",
        "category": _CATEGORIES[noun],
        "price": round(4.99 + (product_id * 37) % 250, 2),
        "in_stock": product_id % 7 != 0,
    }


def is_available(product_id: int) -> bool:
    """Whether ``product_id`` exists and is not discontinued."""
    return 1 <= product_id <= CATALOG_SIZE and product_id % DISCONTINUED_EVERY != 0


AVAILABLE_IDS = [i for i in range(1, CATALOG_SIZE + 1) if is_available(i)]
CATALOG = {i: product(i) for i in AVAILABLE_IDS}


def status_line(status: int) -> str:
    """WSGI status line for ``status``, e.g. ``"404 Not Found"``."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class ShopApp:
    """The WSGI application of the demo shop (see the module docstring for the endpoints).

    State (sessions and carts) lives in memory. gevent runs one greenlet per request and switches only
    on I/O and sleeps, so the shared state needs no locks.
    """

    _PRODUCT_PATH = re.compile(r"^/products/(\d{1,9})$")

    def __init__(self, seed: int | None = None) -> None:
        """``seed`` seeds the random latencies, failures and tokens (``None``: different every run)."""
        self.rng = random.Random(seed)
        self.sessions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.orders = 0
        self.routes: dict[str, dict[str, Callable[[dict[str, Any]], tuple[int, JSONValue]]]] = {
            "/": {"GET": self.home},
            "/login": {"POST": self.login},
            "/products": {"GET": self.list_products},
            "/search": {"GET": self.search},
            "/cart": {"GET": self.view_cart, "POST": self.add_to_cart},
            "/checkout": {"POST": self.checkout},
            "/reports/sales": {"GET": self.sales_report},
            "/health": {"GET": self.health},
            "/delay": {"GET": self.delay, "POST": self.delay},
        }

    # --- WSGI plumbing -----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """Route the request, run its handler and answer JSON (errors as ``{"error": ...}``)."""
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        extra_headers: list[tuple[str, str]] = []
        try:
            status, payload = self.dispatch(method, path, environ)
        except HTTPError as exc:
            status, payload, extra_headers = exc.status, {"error": exc.message}, exc.headers
        if status in (204, 304) or method == "HEAD":
            body = b""
        else:
            body = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra_headers]
        start_response(status_line(status), headers)
        return [body]

    def dispatch(self, method: str, path: str, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """Find the handler of ``method path`` and call it; raises :class:`HTTPError` for 404/405."""
        match = self._PRODUCT_PATH.match(path)
        if match:
            handlers = {"GET": lambda env: self.get_product(env, int(match.group(1)))}
        else:
            handlers = self.routes.get(path.rstrip("/") or "/")
        if handlers is None:
            raise HTTPError(404, f"no such page: {path}")
        handler = handlers.get(method)
        if handler is None:
            raise HTTPError(405, f"method {method} not allowed on {path}", [("Allow", ", ".join(handlers))])
        return handler(environ)

    @staticmethod
    def query(environ: dict[str, Any]) -> dict[str, str]:
        """The query string as ``{name: last value}``."""
        return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}

    @staticmethod
    def json_body(environ: dict[str, Any]) -> dict[str, Any]:
        """The request body parsed as a JSON object; raises :class:`HTTPError` 400/413 otherwise."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HTTPError(400, "bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise HTTPError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise HTTPError(400, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "body must be a JSON object")
        return body

    def session(self, environ: dict[str, Any]) -> dict[str, Any]:
        """The session of the request's ``Authorization: Bearer <token>``; raises 401 without one."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = auth.partition(" ")
        session = self.sessions.get(token.strip()) if scheme.lower() == "bearer" else None
        if session is None:
            raise HTTPError(401, "login required", [("WWW-Authenticate", "Bearer")])
        self.sessions.move_to_end(token.strip())
        return session

    def work(self, endpoint: str) -> None:
        """Simulate the server-side work of ``endpoint``: sleep its latency, cooperatively."""
        gevent.sleep(LATENCY[endpoint].sample_ms(self.rng) / 1000.0)

    @staticmethod
    def int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
        """Integer query parameter ``name`` in ``[low, high]``; raises :class:`HTTPError` 400 otherwise."""
        text = params.get(name, "")
        if text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise HTTPError(400, f"{name} must be an integer") from None
        if not low <= value <= high:
            raise HTTPError(400, f"{name} must be between {low} and {high}")
        return value

    # --- endpoints ---------------------------------------------------------------------------------

    def home(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``GET /``: the home page, with a few featured products."""
        self.work("home")
        featured = [CATALOG[i] for i in AVAILABLE_IDS[:4]]
        return 200, {"shop": "locust-metrics demo shop", "featured": featured}

    def login(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``POST /login``: check the credentials and open a session; 401 on an empty password."""
        body = self.json_body(environ)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username or not isinstance(password, (str, type(None))):
            raise HTTPError(400, "expected {\"username\": ..., \"password\": ...}")
        self.work("login")
        if not password:
            raise HTTPError(401, "invalid username or password")
        token = f"{self.rng.getrandbits(128):032x}"
        self.sessions[token] = {"username": username, "cart": {}}
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return 200, {"token": token, "username": username}

    def list_products(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``GET /products?page=N&per_page=M``: one page of available products (``[]`` past the end)."""
        params = self.query(environ)
        page = self.int_param(params, "page", 1, 1, 1_000_000)
        per_page = self.int_param(params, "per_page", PAGE_SIZE, 1, MAX_PAGE_SIZE)
        self.work("products")
        start = (page - 1) * per_page
        return 200, [CATALOG[i] for i in AVAILABLE_IDS[start : start + per_page]]

    def get_product(self, environ: dict[str, Any], product_id: int) -> tuple[int, JSONValue]:
        """``GET /products/<id>``: one product; 404 when discontinued (id divisible by 25) or unknown."""
        self.work("product")
        if not is_available(product_id):
            raise HTTPError(404, f"product {product_id} not found")
        return 200, CATALOG[product_id]

    def search(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``GET /search?q=TEXT``: products whose name contains TEXT (case-insensitive), at most 20."""
        text = self.query(environ).get("q", "").strip().lower()
        if not text:
            raise HTTPError(400, "missing query parameter q")
        self.work("search")
        results = [p for p in CATALOG.values() if text in p["name"]][:MAX_SEARCH_RESULTS]
        return 200, {"query": text, "count": len(results), "results": results}

    @staticmethod
    def cart_view(cart: dict[int, int]) -> dict[str, JSONValue]:
        """The JSON form of a cart ``{product_id: quantity}``."""
        items = [
            {"product_id": pid, "name": CATALOG[pid]["name"], "quantity": qty, "price": CATALOG[pid]["price"]}
            for pid, qty in cart.items()
        ]
        total = round(sum(item["price"] * item["quantity"] for item in items), 2)
        return {"items": items, "total": total}

    def add_to_cart(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``POST /cart``: add ``quantity`` (default 1) of ``product_id`` to the session's cart."""
        session = self.session(environ)
        body = self.json_body(environ)
        product_id, quantity = body.get("product_id"), body.get("quantity", 1)
        if type(product_id) is not int or type(quantity) is not int or not 1 <= quantity <= 99:
            raise HTTPError(400, "expected {\"product_id\": int, \"quantity\": 1-99}")
        self.work("cart")
        if not is_available(product_id):
            raise HTTPError(404, f"product {product_id} not found")
        cart = session["cart"]
        cart[product_id] = min(cart.get(product_id, 0) + quantity, 99)
        return 200, self.cart_view(cart)

    def view_cart(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``GET /cart``: the session's cart."""
        session = self.session(environ)
        self.work("cart")
        return 200, self.cart_view(session["cart"])

    def checkout(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``POST /checkout``: order the cart; about 3% fail with 500 "payment provider timeout"."""
        session = self.session(environ)
        if not session["cart"]:
            raise HTTPError(400, "cart is empty")
        if self.rng.random() < CHECKOUT_FAILURE_RATE:
            gevent.sleep(CHECKOUT_FAILURE_DELAY_MS / 1000.0)
            raise HTTPError(500, "payment provider timeout")
        self.work("checkout")
        view = self.cart_view(session["cart"])
        session["cart"] = {}
        self.orders += 1
        return 200, {"order_id": f"ord-{self.orders:08d}", "items": len(view["items"]), "total": view["total"]}

    def sales_report(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``GET /reports/sales``: an expensive report, always 1100-1500 ms."""
        gevent.sleep(self.rng.uniform(*SALES_REPORT_MS) / 1000.0)
        top = [CATALOG[i] for i in AVAILABLE_IDS[:5]]
        return 200, {"period": "last_30_days", "orders": self.orders, "top_products": top}

    def health(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``GET /health``: answers at once."""
        return 200, {"status": "ok"}

    def delay(self, environ: dict[str, Any]) -> tuple[int, JSONValue]:
        """``GET /delay?ms=N&status=S``: sleep exactly N ms, answer status S (for tests)."""
        params = self.query(environ)
        try:
            delay_ms = float(params.get("ms") or 0)
        except ValueError:
            raise HTTPError(400, "ms must be a number of milliseconds") from None
        if not 0 <= delay_ms <= MAX_DELAY_MS:  # also rejects NaN
            raise HTTPError(400, f"ms must be between 0 and {MAX_DELAY_MS}")
        status = self.int_param(params, "status", 200, 200, 599)
        if delay_ms:
            gevent.sleep(delay_ms / 1000.0)
        return status, {"delayed_ms": delay_ms if delay_ms % 1 else int(delay_ms), "status": status}


class DemoServer(WSGIServer):
    """gevent's WSGI server with ``TCP_NODELAY`` on every connection.

    pywsgi sends a response's headers and its body in two writes. With Nagle's algorithm on, the body
    would wait for the client to acknowledge the headers, and clients delay that acknowledgement by up
    to 40 ms: measured latencies would then be the simulated ones plus a random ~40 ms.
    """

    def handle(self, sock: socket.socket, address: Any) -> None:
        """Serve one connection, with Nagle's algorithm off."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # not TCP (e.g. a Unix socket)
            pass
        super().handle(sock, address)


def make_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, seed: int | None = None,
                access_log: bool = False) -> WSGIServer:
    """Build the demo shop's server on ``host:port`` (not started: call ``start()`` or ``serve_forever()``).

    ``port`` 0 picks a free port (read ``server.server_port`` after ``start()``). ``seed`` makes the
    simulated latencies and failures reproducible. With ``access_log`` every request is logged to stderr.
    """
    return DemoServer((host, port), ShopApp(seed), log=sys.stderr if access_log else None)


def main(argv: list[str] | None = None) -> int:
    """Command line: serve until SIGTERM or SIGINT, then stop cleanly (exit status 0)."""
    parser = argparse.ArgumentParser(description="Demo web shop for the locust-metrics example load test.")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to bind (default {DEFAULT_PORT})")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible latencies and failures")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    server = make_server(args.host, args.port, args.seed, args.access_log)
    server.stop_timeout = 2  # seconds given to requests in flight at shutdown
    try:
        server.start()
    except OSError as exc:
        print(f"demo target: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        # A signal ignored from the start stays ignored (as Python does for Ctrl-C): a script that runs
        # us in the background, e.g. run_demo.sh, decides itself when to stop us.
        if signal.getsignal(signum) is not signal.SIG_IGN:
            gevent.signal_handler(signum, server.stop)
    host = args.host if ":" not in args.host else f"[{args.host}]"
    print(f"demo target listening on http://{host}:{server.server_port}", flush=True)
    server.serve_forever()
    print("demo target stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
