"""Example load test of the demo shop (examples/demo_target.py), with live Prometheus metrics.

The one line that matters for locust-metrics is the first import: with it, this test's metrics are
served on http://127.0.0.1:9646/metrics while Locust runs (and on /metrics of the web UI). Everything
else is an ordinary locustfile.

Run it from the repository root, against the demo shop::

    python examples/demo_target.py &                    # http://127.0.0.1:8080
    locust --config examples/locust.conf                # headless, 20 users, 1 minute
    curl -s http://127.0.0.1:9646/metrics | grep ^locust_requests_total

or simply ``bash examples/run_demo.sh``. The target host comes from locust.conf or ``-H``; only run a
load test against a system you own.

Three kinds of users share the load:

* ``ShopUser`` (weight 3) logs in, browses, searches, fills a cart and checks out. Its responses are
  validated with ``catch_response=True``: a response with the wrong content is reported as a failure
  with a short, stable message (e.g. "empty product list"), so failures group well in Locust's
  statistics and in the ``error`` label of ``locust_request_failures_total``. HTTP errors (the demo's
  404s for discontinued products, its occasional 500s at checkout) are left to Locust, which reports
  them by status code.
* ``ReportViewer`` (weight 1) opens the sales report: the slow endpoint (always > 1 s), visible in
  ``locust_slow_requests_total``.
* ``ApiClient`` (weight 1), a ``FastHttpUser``, calls the search API and the health check.

Tags select parts of the scenario: ``browse``, ``search``, ``cart`` and ``checkout`` (ShopUser),
``reports`` (ReportViewer) and ``api`` (ApiClient). Locust filters tasks, not users, so name the User
classes that keep tasks too (before ``--tags``, which takes several values)::

    locust --config examples/locust.conf ShopUser --tags browse search
    locust --config examples/locust.conf ReportViewer ApiClient --tags reports api
    locust --config examples/locust.conf --exclude-tags checkout
"""

import locust_metrics  # noqa: F401  (one line: Prometheus metrics on :9646)

import random

from locust import FastHttpUser, HttpUser, between, tag, task

SEARCH_TERMS = ["mug", "kettle", "camera", "watch", "wireless", "vintage", "headphones", "wireless headphones",
                "smart", "umbrella", "teapot"]
"""What people type into the search box (some terms find nothing, which is a valid answer)."""

PRODUCT_IDS = range(1, 201)
"""Product pages shoppers open. The demo shop answers 404 for ids divisible by 25 (discontinued)."""


def parse_json(response, expected=dict):
    """The response body as JSON of type ``expected`` (dict or list), else ``None``.

    When the body is not JSON, or not of the expected type, the response is marked failed with a short,
    stable message. Checks inside ``with ... catch_response=True`` blocks must not raise: an exception
    other than Locust's own would leave the request unreported.
    """
    try:
        body = response.json()
    except (ValueError, TypeError):
        response.failure("invalid JSON")
        return None
    if not isinstance(body, expected):
        response.failure(f"expected a JSON {'object' if expected is dict else 'list'}")
        return None
    return body


class ShopUser(HttpUser):
    """A shopper: logs in once, then browses, searches, fills a cart and checks out."""

    weight = 3
    wait_time = between(0.5, 1.5)

    def on_start(self):
        """Log in and send the session token with every later request."""
        self.cart_size = 0
        self.listed_ids = []  # ids from the last product list page: candidates for the cart
        username = f"shopper-{random.randrange(1_000_000)}"
        with self.client.post("/login", json={"username": username, "password": "s3cret"},
                              catch_response=True) as response:
            if not response.ok:
                return  # Locust reports the HTTP error itself (by status code)
            login = parse_json(response)
            if login is None:
                return
            if not login.get("token"):
                response.failure("no token in login response")
                return
            self.client.headers["Authorization"] = f"Bearer {login['token']}"

    @tag("browse")
    @task(2)
    def home(self):
        """Open the home page."""
        self.client.get("/")

    @tag("browse")
    @task(4)
    def browse_products(self):
        """Open a page of the catalog: it must list products."""
        page = random.randint(1, 5)
        with self.client.get(f"/products?page={page}", name="/products", catch_response=True) as response:
            if not response.ok:
                return
            products = parse_json(response, list)
            if products is None:
                return
            if not products:
                response.failure("empty product list")
                return
            self.listed_ids = [p["id"] for p in products if isinstance(p, dict) and "id" in p]

    @tag("browse")
    @task(8)
    def view_products(self):
        """Open a few product pages (1 to 4), as a shopper comparing products does."""
        for product_id in random.sample(PRODUCT_IDS, k=random.randint(1, 4)):
            self.view_product(product_id)

    def view_product(self, product_id):
        """Open one product page; every id is reported under the one name ``/products/[id]``."""
        with self.client.get(f"/products/{product_id}", name="/products/[id]", catch_response=True) as response:
            if not response.ok:
                return  # 404 for a discontinued product: Locust reports it as an HTTP error
            product = parse_json(response)
            if product is not None and product.get("id") != product_id:
                response.failure("wrong product")

    @tag("search")
    @task(3)
    def search(self):
        """Search the catalog: the answer must carry a list of results (possibly empty)."""
        term = random.choice(SEARCH_TERMS)
        with self.client.get("/search", params={"q": term}, name="/search", catch_response=True) as response:
            if not response.ok:
                return
            found = parse_json(response)
            if found is not None and not isinstance(found.get("results"), list):
                response.failure("no results list")

    @tag("cart")
    @task(3)
    def add_to_cart(self):
        """Put a product from the last listed page into the cart: the cart must then contain it."""
        product_id = random.choice(self.listed_ids or [1, 2, 3])
        with self.client.post("/cart", json={"product_id": product_id, "quantity": random.randint(1, 3)},
                              catch_response=True) as response:
            if not response.ok:
                return
            cart = parse_json(response)
            if cart is None:
                return
            items = cart.get("items")
            items = items if isinstance(items, list) else []
            if product_id not in {item.get("product_id") for item in items if isinstance(item, dict)}:
                response.failure("item missing from cart")
                return
            self.cart_size = len(items)

    @tag("cart")
    @task(1)
    def view_cart(self):
        """Look at the cart."""
        with self.client.get("/cart", catch_response=True) as response:
            if not response.ok:
                return
            cart = parse_json(response)
            if cart is not None and not isinstance(cart.get("items"), list):
                response.failure("no items list in cart")

    @tag("checkout")
    @task(2)
    def checkout(self):
        """Check out (adding a product first when the cart is empty): a paid order has an order id."""
        if not self.cart_size:
            self.add_to_cart()
            if not self.cart_size:
                return
        with self.client.post("/checkout", catch_response=True) as response:
            if not response.ok:
                return  # ~3% "payment provider timeout" (HTTP 500), reported by Locust; the cart is kept
            order = parse_json(response)
            if order is None:
                return
            if not order.get("order_id"):
                response.failure("no order id")
                return
            self.cart_size = 0


class ReportViewer(HttpUser):
    """A back-office user who opens the sales report, the demo shop's slow endpoint (always > 1 s)."""

    weight = 1
    wait_time = between(1, 3)

    @tag("reports")
    @task(3)
    def sales_report(self):
        """Open the sales report."""
        with self.client.get("/reports/sales", catch_response=True) as response:
            if not response.ok:
                return
            report = parse_json(response)
            if report is not None and "orders" not in report:
                response.failure("incomplete sales report")

    @tag("reports")
    @task(1)
    def home(self):
        """Go back to the home page now and then."""
        self.client.get("/")


class ApiClient(FastHttpUser):
    """A partner integration calling the search API and the health check, with Locust's fast client."""

    weight = 1
    wait_time = between(0.2, 1.0)

    @tag("api")
    @task(4)
    def search(self):
        """Query the search API; every query string is reported under the one name ``/search``."""
        term = random.choice(SEARCH_TERMS)
        with self.client.get("/search", params={"q": term}, name="/search", catch_response=True) as response:
            if not response.ok:
                return
            found = parse_json(response)
            if found is not None and found.get("count") != len(found.get("results") or []):
                response.failure("search count mismatch")

    @tag("api")
    @task(1)
    def health(self):
        """Check that the service reports itself healthy."""
        with self.client.get("/health", catch_response=True) as response:
            if not response.ok:
                return
            health = parse_json(response)
            if health is not None and health.get("status") != "ok":
                response.failure("unhealthy")
