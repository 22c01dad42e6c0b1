"""A tiny Nominatim-compatible server on loopback for the geocoding tests: it answers
``GET /search?q=...&format=json`` from a table, and records what it was asked and when."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Nominatim:
    def __init__(self, places: dict[str, tuple[float, float]]) -> None:
        self.places = {" ".join(k.split()).casefold(): v for k, v in places.items()}
        self.asked: list[tuple[float, str]] = []  # (monotonic time, q)
        self.url = ""


@contextmanager
def nominatim(places: dict[str, tuple[float, float]]) -> Iterator[Nominatim]:
    stub = Nominatim(places)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path != "/search" or query.get("format") != ["json"]:
                self.send_error(404)
                return
            q = query.get("q", [""])[0]
            stub.asked.append((time.monotonic(), q))
            found = stub.places.get(" ".join(q.split()).casefold())
            body = json.dumps(
                []
                if found is None
                else [{"lat": str(found[0]), "lon": str(found[1]), "display_name": q}]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
