"""A local HTTP server speaking the subset of the OCI Object Storage REST API the volume backend uses.

GetNamespace, PutObject, GetObject, HeadObject, DeleteObject and ListObjects (with `prefix`,
`start`, `limit`, `fields` and `nextStartWith` pagination), in memory. Every request must carry a
valid OCI request signature (checked against the public key), so the SDK's real client, signer and
request/response types run end to end; what each request was is kept in `requests` for assertions.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NAMESPACE = "fabricns"
_OBJECT = re.compile(r"^/n/([^/]+)/b/([^/]+)/o/(.+)$")
_LIST = re.compile(r"^/n/([^/]+)/b/([^/]+)/o/?$")


def make_config() -> dict:
    """An oci SDK config with a fresh RSA key (the server checks signatures against it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    return {"region": "us-ashburn-1", "tenancy": "ocid1.tenancy.oc1..aaaa", "user": "ocid1.user.oc1..aaaa",
            "fingerprint": ":".join(["ab"] * 16), "key_content": pem}


class FakeObjectStorage:
    """Buckets of objects behind a ThreadingHTTPServer on 127.0.0.1; use as a context manager.

    `page_size` caps ListObjects pages (the real service's cap is 1000) so tests see pagination;
    `fail` may map an operation name ("PutObject", ...) to an HTTP status to answer it with once.
    """

    def __init__(self, config: dict, *, buckets=("vols",), page_size: int = 1000) -> None:
        private = serialization.load_pem_private_key(config["key_content"].encode(), None)
        self.public_key = private.public_key()
        self.key_id = f"{config['tenancy']}/{config['user']}/{config['fingerprint']}"
        self.objects: dict[str, dict[str, tuple[bytes, float]]] = {b: {} for b in buckets}  # name -> (data, mtime)
        self.page_size = page_size
        self.requests: list[tuple[str, str, dict]] = []  # (operation, object name or "", query)
        self.fail: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeObjectStorage":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def client(self, config: dict):
        """The SDK's real ObjectStorageClient, pointed at this server."""
        import oci

        return oci.object_storage.ObjectStorageClient(config, service_endpoint=self.endpoint,
                                                      retry_strategy=oci.retry.NoneRetryStrategy())

    # -- signature check (draft-cavage HTTP signatures, as the oci signer makes them) -----------
    def check_signature(self, method: str, target: str, headers, body: bytes) -> str:
        """'' when the request is signed by our key over the headers it must cover, else why not."""
        auth = headers.get("authorization", "")
        params = dict(re.findall(r'(\w+)="([^"]*)"', auth))
        if not auth.startswith("Signature ") or params.get("keyId") != self.key_id:
            return "missing or foreign signature"
        signed = params.get("headers", "").split()
        needed = {"date", "(request-target)", "host"} | ({"x-content-sha256", "content-length"} if method in ("PUT", "POST") and body else set())
        if method == "PUT" and _OBJECT.match(urlsplit(target).path):
            needed -= {"x-content-sha256", "content-length"}  # PutObject bodies are not signed (oci SDK behaviour)
        if not needed <= set(signed):
            return f"signature does not cover {sorted(needed - set(signed))}"
        if "x-content-sha256" in signed:
            if headers.get("x-content-sha256") != base64.b64encode(hashlib.sha256(body).digest()).decode():
                return "x-content-sha256 does not match the body"
        lines = []
        for name in signed:
            value = f"{method.lower()} {target}" if name == "(request-target)" else headers.get(name, "")
            lines.append(f"{name}: {value}")
        try:
            self.public_key.verify(base64.b64decode(params["signature"]), "\n".join(lines).encode(),
                                   padding.PKCS1v15(), hashes.SHA256())
        except Exception:  # noqa: BLE001 - any failure is a bad signature
            return "bad signature"
        return ""


def _handler(storage: FakeObjectStorage):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes; Nagle would hold the body 40 ms

        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", content_type: str = "application/json", extra=None) -> None:
            self.send_response(status)
            self.send_header("opc-request-id", "fake")
            self.send_header("content-type", content_type)
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            self._reply(status, json.dumps({"code": code, "message": message}).encode())

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            why = storage.check_signature(self.command, self.path, self.headers, body)
            if why:
                return self._error(401, "NotAuthenticated", why)
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path.rstrip("/") == "/n" and self.command == "GET":
                storage.requests.append(("GetNamespace", "", query))
                return self._reply(200, json.dumps(NAMESPACE).encode())
            listing, obj = _LIST.match(url.path), _OBJECT.match(url.path)
            match = obj or listing
            if match is None or match.group(1) != NAMESPACE:
                return self._error(404, "NamespaceNotFound", f"no such path {url.path}")
            bucket = storage.objects.get(unquote(match.group(2)))
            if bucket is None:
                return self._error(404, "BucketNotFound", f"no bucket {match.group(2)}")
            operation = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}[self.command]
            if listing:
                operation = "ListObjects"
            name = unquote(obj.group(3)) if obj else ""
            storage.requests.append((operation, name, query))
            status = storage.fail.pop(operation, None)
            if status:
                return self._error(status, "InternalError", f"injected failure of {operation}")
            with storage._lock:
                if operation == "ListObjects" and self.command == "GET":
                    return self._list(bucket, query)
                if operation == "PutObject":
                    bucket[name] = (body, time.time())
                    etag = hashlib.md5(body).hexdigest()  # noqa: S324 - an etag, not security
                    return self._reply(200, extra={"etag": etag, "opc-content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()})  # noqa: S324
                data = bucket.get(name, (None,))[0]
                if data is None:
                    return self._error(404, "ObjectNotFound", f"The object '{name}' was not found in the bucket")
                if operation == "DeleteObject":
                    del bucket[name]
                    return self._reply(204)
                return self._reply(200, data, "application/octet-stream", {"etag": hashlib.md5(data).hexdigest()})  # noqa: S324

        def _list(self, bucket: dict, query: dict) -> None:
            prefix, start = query.get("prefix", ""), query.get("start", "")
            limit = min(int(query.get("limit", 1000)), storage.page_size)
            # With delimiter "/", names below a further "/" fold into one prefix entry each, as on OCI.
            entries = set()
            for name in bucket:
                if name.startswith(prefix):
                    rest = name[len(prefix):]
                    entries.add(prefix + rest.split("/", 1)[0] + "/" if query.get("delimiter") == "/" and "/" in rest else name)
            names = sorted(n for n in entries if n >= start)
            page, rest = names[:limit], names[limit:]
            fields = set(query.get("fields", "name").split(","))
            objects, prefixes = [], []
            for n in page:
                if n not in bucket:
                    prefixes.append(n)
                    continue
                obj = {"name": n}
                if "size" in fields:
                    obj["size"] = len(bucket[n][0])
                if "timeModified" in fields:
                    obj["timeModified"] = datetime.fromtimestamp(bucket[n][1], timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                objects.append(obj)
            payload = {"objects": objects, "prefixes": prefixes}
            if rest:
                payload["nextStartWith"] = rest[0]
            return self._reply(200, json.dumps(payload).encode())

        do_GET = do_PUT = do_HEAD = do_DELETE = _handle

    return Handler
