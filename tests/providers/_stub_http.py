"""A requests transport adapter that records requests and answers from a script (the cloud SDKs' seam)."""
from __future__ import annotations

import json

import requests


class StubAdapter(requests.adapters.BaseAdapter):
    """Answers each request with `respond(method, url, body) -> (status, json_body)`; keeps what it saw."""

    def __init__(self, respond):
        super().__init__()
        self.respond = respond
        self.requests: list[tuple[str, str, dict | None]] = []

    def send(self, request, **kwargs):
        body = request.body
        if isinstance(body, bytes):
            body = body.decode()
        parsed = json.loads(body) if body else None
        self.requests.append((request.method, request.url, parsed))
        status, payload = self.respond(request.method, request.url, parsed)
        response = requests.Response()
        response.status_code = status
        response.request = request
        response.url = request.url
        response._content = json.dumps(payload).encode()
        response.headers["content-type"] = "application/json"
        response.headers["opc-request-id"] = "stub"
        return response

    def close(self):
        pass
