#!/usr/bin/env python3
"""A Kubernetes API server for tests: Namespaces, Pods, NetworkPolicies and Nodes over HTTPS.

It follows the API conventions a client depends on (API Concepts): one resourceVersion counter
for every change, as etcd's; lists consistent at one resourceVersion, in chunks (limit/continue),
an expired continue token answered 410 Expired; watches from a resourceVersion replaying the
history after it, bookmarks, timeoutSeconds, "too old resource version" as an ERROR event
(or, on request, as an HTTP 410) once history is compacted; Status bodies for every error;
bearer-token and client-certificate authentication, 401 and 403 worded as the API server words
them. A plain-HTTP control surface on a second port lets a test change objects in bulk, drop
every watch (also mid-event), compact history, stop and start the API port, add latency,
throttle (429 with Retry-After, or 5xx), hang watches, rotate tokens, and read counters.

    kube-test-apiserver.py make-certs DIR [--san IP_OR_DNS]...
    kube-test-apiserver.py serve --cert F --key F --client-ca F [--listen HOST:PORT]
        [--control-listen HOST:PORT] [--ready-file F] [--token TOKEN=USER]... [--forbidden-user USER]...
        [--objects FILE.json]... [--bookmark-interval SECONDS] [--quiet]

Only for tests: it keeps everything in memory, listens where it is told (loopback, or a test
host's address inside a test's network namespace) and trusts its control port's callers.
"""

import argparse
import base64
import bisect
import http.server
import ipaddress
import json
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import unquote as url_unquote

# The resources served: (group-version path prefix, plural) -> kind, list kind, apiVersion, namespaced.
RESOURCES = {
    ("/api/v1", "namespaces"): ("Namespace", "NamespaceList", "v1", False),
    ("/api/v1", "pods"): ("Pod", "PodList", "v1", True),
    ("/api/v1", "nodes"): ("Node", "NodeList", "v1", False),
    ("/apis/networking.k8s.io/v1", "networkpolicies"): ("NetworkPolicy", "NetworkPolicyList", "networking.k8s.io/v1", True),
}
KINDS = {kind: (prefix, plural, list_kind, api_version, namespaced)
         for (prefix, plural), (kind, list_kind, api_version, namespaced) in RESOURCES.items()}
EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list.")


def status_body(code, reason, message, details=None):
    """A Status object, as the API server sends with every error."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return json.dumps(body, separators=(",", ":")).encode()


class APIError(Exception):
    """An error answered with a Status body."""

    def __init__(self, code, reason, message, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.headers = code, reason, message, headers or {}


class Stored:
    """One object: its identity, resourceVersion, the fields selectors read, and its JSON without
    kind and apiVersion (as items of a typed list carry it)."""

    __slots__ = ("kind", "namespace", "name", "rv", "body", "node_name", "labels")

    def __init__(self, kind, namespace, name, rv, body, node_name, labels):
        self.kind, self.namespace, self.name, self.rv = kind, namespace, name, rv
        self.body, self.node_name, self.labels = body, node_name, labels

    def with_kind(self):
        """The JSON with kind and apiVersion first, as watch events carry objects."""
        api_version = KINDS[self.kind][3]
        head = ('{"kind":"%s","apiVersion":"%s"' % (self.kind, api_version)).encode()
        return head + (b"," + self.body[1:] if len(self.body) > 2 else b"}")


class Store:
    """Objects, their history and list snapshots, under one condition variable."""

    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 0
        self.floor = 0  # history before this resourceVersion is compacted
        self.objects = {}  # (kind, namespace, name) -> Stored
        self.history = []  # (rv, type, Stored), rv ascending
        self.history_rvs = []
        self.snapshots = {}  # id -> (rv, created, [Stored])

    def put(self, obj, create_only=False, update_only=False, path_namespace=None):
        """Creates or replaces an object (a dict with kind); returns its Stored. Caller holds cond."""
        kind = obj.get("kind")
        if kind not in KINDS:
            raise APIError(400, "BadRequest", "kind %r is not served (Namespace, Pod, NetworkPolicy, Node)" % (kind,))
        namespaced = KINDS[kind][4]
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise APIError(422, "Invalid", "%s: metadata.name: Required value" % kind)
        namespace = ""
        if namespaced:
            namespace = meta.get("namespace") or path_namespace or "default"
            if path_namespace and namespace != path_namespace:
                raise APIError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        key = (kind, namespace, meta["name"])
        old = self.objects.get(key)
        if create_only and old is not None:
            raise APIError(409, "AlreadyExists", '%s "%s" already exists' % (KINDS[kind][1], meta["name"]))
        if update_only and old is None:
            raise APIError(404, "NotFound", '%s "%s" not found' % (KINDS[kind][1], meta["name"]))
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", str(uuid.uuid4()) if old is None else meta.get("uid", str(uuid.uuid4())))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        stored = Stored(kind, namespace, meta["name"], self.rv, json.dumps(obj, separators=(",", ":")).encode(),
                        spec.get("nodeName"), labels)
        self.objects[key] = stored
        self.record("MODIFIED" if old is not None else "ADDED", stored)
        return stored

    def delete(self, kind, namespace, name):
        """Deletes an object; its last state with the deletion's resourceVersion. Caller holds cond."""
        key = (kind, namespace or "", name)
        old = self.objects.pop(key, None)
        if old is None:
            raise APIError(404, "NotFound", '%s "%s" not found' % (KINDS[kind][1] if kind in KINDS else kind, name))
        self.rv += 1
        obj = json.loads(old.body)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        gone = Stored(kind, old.namespace, name, self.rv, json.dumps(obj, separators=(",", ":")).encode(), old.node_name, old.labels)
        self.record("DELETED", gone)
        return gone

    def record(self, event_type, stored):
        self.history.append((stored.rv, event_type, stored))
        self.history_rvs.append(stored.rv)

    def compact(self):
        """Forgets history up to now and the list snapshots older than now. Caller holds cond."""
        self.floor = self.rv
        cut = bisect.bisect_right(self.history_rvs, self.floor)
        del self.history[:cut]
        del self.history_rvs[:cut]
        for sid in [sid for sid, (rv, _, _) in self.snapshots.items() if rv < self.floor]:
            del self.snapshots[sid]

    def events_after(self, rv):
        """History entries with resourceVersion > rv. Caller holds cond."""
        return self.history[bisect.bisect_right(self.history_rvs, rv):]


def parse_selector(text, allowed):
    """A field selector as (field, op, value) terms; an unsupported field is a 400."""
    terms = []
    for part in filter(None, (text or "").split(",")):
        for op in ("!=", "==", "="):
            if op in part:
                field, value = part.split(op, 1)
                break
        else:
            raise APIError(400, "BadRequest", 'invalid field selector: "%s"' % part)
        field = field.strip()
        if field not in allowed:
            raise APIError(400, "BadRequest", '"%s" is not a known field selector: only "%s"' % (field, '", "'.join(allowed)))
        terms.append((field, "!=" if op == "!=" else "=", value.strip()))
    return terms


def parse_label_selector(text):
    """A label selector of k=v, k!=v, k, !k terms."""
    terms = []
    for part in filter(None, (text or "").split(",")):
        part = part.strip()
        if "!=" in part:
            k, v = part.split("!=", 1)
            terms.append((k.strip(), "!=", v.strip()))
        elif "==" in part or "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            terms.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            terms.append((part[1:].strip(), "!", None))
        else:
            terms.append((part, "exists", None))
    return terms


def matches(stored, fields, labels):
    for field, op, value in fields:
        actual = {"metadata.name": stored.name, "metadata.namespace": stored.namespace,
                  "spec.nodeName": stored.node_name or ""}[field]
        if (actual == value) != (op == "="):
            return False
    for key, op, value in labels:
        present = key in stored.labels
        if op == "exists" and not present or op == "!" and present:
            return False
        if op == "=" and stored.labels.get(key) != value or op == "!=" and stored.labels.get(key) == value:
            return False
    return True


class State:
    """Everything the handlers share: the store, auth tables, fault switches and counters."""

    def __init__(self, tokens, forbidden, bookmark_interval, quiet):
        self.store = Store()
        self.lock = threading.Lock()
        self.tokens = dict(tokens)
        self.forbidden = set(forbidden)
        self.bookmark_interval = bookmark_interval
        self.quiet = quiet
        self.latency = 0.0
        self.throttle = {"count": 0, "code": 429, "retryAfterSeconds": None}
        self.hang = False
        self.watch410 = "event"
        self.drop_epoch = 0
        self.cut_mid_event = False
        self.stats = {"lists": 0, "watches": 0, "requests": 0, "byUser": {}, "byPath": {}}
        self.open_watches = 0
        self.connections = set()  # open API sockets, closed by /stop

    def count(self, key, user=None, path=None):
        with self.lock:
            self.stats[key] = self.stats.get(key, 0) + 1
            if user:
                self.stats["byUser"][user] = self.stats["byUser"].get(user, 0) + 1
            if path:
                self.stats["byPath"][path] = self.stats["byPath"].get(path, 0) + 1


class APIHandler(http.server.BaseHTTPRequestHandler):
    """The Kubernetes API: get, list, watch, create, update, delete."""

    protocol_version = "HTTP/1.1"
    server_version = "kube-test-apiserver"

    def setup(self):
        self.connection = self.request
        self.connection.settimeout(30)
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            self.handshake_failed = True
        else:
            self.handshake_failed = False
        self.connection.settimeout(None)
        super().setup()
        with self.server.state.lock:
            self.server.state.connections.add(self.connection)

    def finish(self):
        with self.server.state.lock:
            self.server.state.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self):
        if self.handshake_failed:
            return
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, OSError):
            pass

    def log_message(self, fmt, *args):
        if not self.server.state.quiet:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    # Dispatch

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    def do_PUT(self):
        self.serve("PUT")

    def do_DELETE(self):
        self.serve("DELETE")

    def serve(self, method):
        state = self.server.state
        path, _, query = self.path.partition("?")
        params = {}
        for pair in filter(None, query.split("&")):
            k, _, v = pair.partition("=")
            params[unquote(k)] = unquote(v)
        body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        if state.latency:
            time.sleep(state.latency)
        try:
            user = self.authenticate()
            state.count("requests", user=user, path=path)
            with state.lock:
                throttle = state.throttle
                if throttle["count"] > 0:
                    throttle["count"] -= 1
                    code = throttle["code"]
                    headers = {}
                    if throttle["retryAfterSeconds"] is not None:
                        headers["Retry-After"] = str(throttle["retryAfterSeconds"])
                    reason = "TooManyRequests" if code == 429 else "InternalError" if code == 500 else "ServiceUnavailable"
                    raise APIError(code, reason, "the server is throttling requests (test)" if code == 429 else "the server is unavailable (test)", headers)
            if path == "/version":
                return self.reply(200, json.dumps({"major": "1", "minor": "31", "gitVersion": "v1.31.0-picket-test"}).encode())
            if path in ("/healthz", "/readyz", "/livez"):
                return self.reply(200, b"ok", "text/plain")
            resource, namespace, name = self.route(path)
            kind = resource[0]
            verb = {"GET": "get" if name else ("watch" if params.get("watch") in ("true", "1") else "list"),
                    "POST": "create", "PUT": "update", "DELETE": "delete"}[method]
            self.authorize(user, verb, resource, namespace)
            if method == "GET" and name:
                return self.get(kind, namespace, name)
            if method == "GET" and verb == "watch":
                return self.watch(kind, namespace, params)
            if method == "GET":
                return self.list(kind, namespace, params)
            if method == "DELETE" and name:
                with state.store.cond:
                    gone = state.store.delete(kind, namespace, name)
                    state.store.cond.notify_all()
                return self.reply(200, gone.with_kind())
            if method in ("POST", "PUT"):
                try:
                    obj = json.loads(body or b"null")
                except ValueError as error:
                    raise APIError(400, "BadRequest", "the body is not JSON: %s" % error)
                if not isinstance(obj, dict):
                    raise APIError(400, "BadRequest", "the body is not an object")
                obj.setdefault("kind", kind)
                if obj["kind"] != kind:
                    raise APIError(400, "BadRequest", "kind %s posted to %s" % (obj["kind"], path))
                if method == "PUT" and (not name or obj.get("metadata", {}).get("name") not in (None, name)):
                    raise APIError(400, "BadRequest", "the name of the object does not match the name on the URL")
                if method == "PUT":
                    obj.setdefault("metadata", {})["name"] = name
                if method == "POST" and name:
                    raise APIError(405, "MethodNotAllowed", "POST is not allowed on an object")
                with state.store.cond:
                    stored = state.store.put(obj, create_only=method == "POST", update_only=method == "PUT", path_namespace=namespace)
                    state.store.cond.notify_all()
                return self.reply(201 if method == "POST" else 200, stored.with_kind())
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        except APIError as error:
            self.reply(error.code, status_body(error.code, error.reason, error.message), headers=error.headers)

    def route(self, path):
        """(resource, namespace, name) of an API path; 404 for anything else."""
        parts = [p for p in path.split("/") if p]
        for (prefix, plural), resource in RESOURCES.items():
            head = [p for p in prefix.split("/") if p]
            if parts[:len(head)] != head:
                continue
            rest = parts[len(head):]
            namespaced = resource[3]
            if rest[:1] == [plural] and len(rest) <= 2:
                return resource, None, rest[1] if len(rest) == 2 else None
            if namespaced and len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] == plural:
                return resource, rest[1], rest[3] if len(rest) == 4 else None
        raise APIError(404, "NotFound", "the server could not find the requested resource")

    def authenticate(self):
        state = self.server.state
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user = state.tokens.get(header[len("Bearer "):].strip())
            if user is None:
                raise APIError(401, "Unauthorized", "Unauthorized")
            return user
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if cert:
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        return value
        raise APIError(401, "Unauthorized", "Unauthorized")

    def authorize(self, user, verb, resource, namespace):
        if user not in self.server.state.forbidden:
            return
        kind, _, api_version, _ = resource
        plural = KINDS[kind][1]
        group = api_version.split("/")[0] if "/" in api_version else ""
        where = 'in the namespace "%s"' % namespace if namespace else "at the cluster scope"
        raise APIError(403, "Forbidden", '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s'
                       % (plural, user, verb, plural, group, where))

    def reply(self, code, body, content_type="application/json", headers=None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    # Verbs

    def get(self, kind, namespace, name):
        store = self.server.state.store
        with store.cond:
            stored = store.objects.get((kind, namespace or "", name))
        if stored is None:
            raise APIError(404, "NotFound", '%s "%s" not found' % (KINDS[kind][1], name))
        self.reply(200, stored.with_kind())

    def selection(self, kind, namespace, params):
        fields = parse_selector(params.get("fieldSelector"), ["metadata.name", "metadata.namespace", "spec.nodeName"])
        if namespace:
            fields.append(("metadata.namespace", "=", namespace))
        return fields, parse_label_selector(params.get("labelSelector"))

    def list(self, kind, namespace, params):
        state = self.server.state
        store = state.store
        fields, labels = self.selection(kind, namespace, params)
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        with store.cond:
            if token:
                try:
                    decoded = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
                    sid, offset, rv = decoded["id"], int(decoded["offset"]), int(decoded["rv"])
                except (ValueError, KeyError, TypeError):
                    raise APIError(400, "BadRequest", "continue key is not valid: illegal base64 data or invalid JSON")
                snapshot = store.snapshots.get(sid)
                if snapshot is None or rv < store.floor:
                    raise APIError(410, "Expired", EXPIRED_CONTINUE)
                rv, _, items = snapshot
            else:
                rv = store.rv
                items = sorted((s for s in store.objects.values() if s.kind == kind and matches(s, fields, labels)),
                               key=lambda s: (s.namespace, s.name))
                offset = 0
                sid = None
            page = items[offset:offset + limit] if limit > 0 else items[offset:]
            more = limit > 0 and offset + limit < len(items)
            meta = {"resourceVersion": str(rv)}
            if more:
                if sid is None:
                    sid = uuid.uuid4().hex
                    store.snapshots[sid] = (rv, time.time(), items)
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"id": sid, "offset": offset + limit, "rv": rv}).encode()).decode().rstrip("=")
                meta["remainingItemCount"] = len(items) - offset - limit
            elif sid is not None:
                store.snapshots.pop(sid, None)
            now = time.time()
            for old in [k for k, (_, created, _) in store.snapshots.items() if now - created > 300]:
                del store.snapshots[old]
        state.count("lists")  # after the page's resourceVersion is fixed
        _, _, list_kind, api_version, _ = KINDS[kind]
        head = json.dumps({"kind": list_kind, "apiVersion": api_version, "metadata": meta}, separators=(",", ":")).encode()
        body = head[:-1] + b',"items":[' + b",".join(s.body for s in page) + b"]}"
        self.reply(200, body)

    def watch(self, kind, namespace, params):
        state = self.server.state
        store = state.store
        fields, labels = self.selection(kind, namespace, params)
        timeout = float(params.get("timeoutSeconds") or 1800)
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        since = params.get("resourceVersion") or "0"
        try:
            since = int(since)
        except ValueError:
            raise APIError(400, "BadRequest", "invalid resourceVersion: %s" % since)
        pending = []
        with store.cond:
            if since and since < store.floor:
                message = "too old resource version: %d (%d)" % (since, store.floor)
                if state.watch410 == "http":
                    raise APIError(410, "Expired", message)
                gone = status_body(410, "Expired", message)
                self.start_stream()
                self.write_chunk(b'{"type":"ERROR","object":' + gone + b"}\n")
                self.end_stream()
                return
            if since == 0:
                for s in sorted(store.objects.values(), key=lambda s: (s.namespace, s.name)):
                    if s.kind == kind and matches(s, fields, labels):
                        pending.append(b'{"type":"ADDED","object":' + s.with_kind() + b"}\n")
                since = store.rv
        state.count("watches")
        with state.lock:
            state.open_watches += 1
            epoch = state.drop_epoch
        self.start_stream()
        deadline = time.time() + timeout
        last_write = time.time()
        position = since
        try:
            while True:
                if self.dropped(epoch) and not state.cut_mid_event:
                    return self.cut(None)
                if state.hang:
                    time.sleep(0.05)
                    last_write = time.time()
                    continue
                for line in pending:
                    if self.dropped(epoch):
                        return self.cut(line)
                    self.write_chunk(line)
                    last_write = time.time()
                pending = []
                now = time.time()
                if now >= deadline:
                    return self.end_stream()
                with store.cond:
                    entries = store.events_after(position)
                    if not entries:
                        wait = min(deadline - now, 0.2)
                        if bookmarks:
                            wait = min(wait, max(0.0, last_write + state.bookmark_interval - now))
                        store.cond.wait(wait)
                        entries = store.events_after(position)
                    current = store.rv
                for rv, event_type, s in entries:
                    position = rv
                    if s.kind == kind and matches(s, fields, labels):
                        pending.append(('{"type":"%s","object":' % event_type).encode() + s.with_kind() + b"}\n")
                if not entries:
                    position = max(position, current)
                if not pending and bookmarks and time.time() - last_write >= state.bookmark_interval and not state.hang:
                    api_version = KINDS[kind][3]
                    pending.append(('{"type":"BOOKMARK","object":{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"}}}\n'
                                    % (kind, api_version, max(position, current))).encode())
        except (ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            with state.lock:
                state.open_watches -= 1

    def dropped(self, epoch):
        """Whether /drop-streams was called since this watch started."""
        return self.server.state.drop_epoch != epoch

    def cut(self, line):
        """Ends the stream abruptly (half of `line` first, when given): a connection lost."""
        try:
            if line:
                half = line[:max(1, len(line) // 2)]
                self.wfile.write(b"%x\r\n" % len(line) + half)
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True


def unquote(text):
    """A query component, percent-decoded."""
    return url_unquote(text.replace("+", " "))


class APIServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, context, state):
        self.state = state
        self.context = context
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, APIHandler)

    def server_bind(self):
        # No reverse lookup of the address (HTTPServer's getfqdn): a test host has no DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        if not self.state.quiet:
            super().handle_error(request, client_address)


class ControlHandler(http.server.BaseHTTPRequestHandler):
    """The tests' control surface (plain HTTP, no authentication)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if not self.server.state.quiet:
            sys.stderr.write("control %s\n" % (fmt % args))

    def do_GET(self):
        state = self.server.state
        path, _, query = self.path.partition("?")
        if path == "/stats":
            with state.lock, state.store.cond:
                stats = dict(state.stats, byUser=dict(state.stats["byUser"]), byPath=dict(state.stats["byPath"]))
                stats.update(resourceVersion=str(state.store.rv), floor=str(state.store.floor), openWatches=state.open_watches)
            return self.answer(200, stats)
        if path == "/objects":
            kind = dict(p.partition("=")[::2] for p in query.split("&") if p).get("kind")
            with state.store.cond:
                items = [json.loads(s.with_kind()) for s in state.store.objects.values() if kind in (None, s.kind)]
            return self.answer(200, {"items": items})
        self.answer(404, {"error": "no such control: %s" % path})

    def do_POST(self):
        state = self.server.state
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = parse_objects(raw) if path == "/objects" else (json.loads(raw) if raw else {})
        except ValueError as error:
            return self.answer(400, {"error": "not JSON: %s" % error})
        store = state.store
        try:
            if path == "/objects":
                with store.cond:
                    for obj in body:
                        store.put(obj)
                    store.cond.notify_all()
                    return self.answer(200, {"resourceVersion": str(store.rv)})
            if path == "/delete":
                with store.cond:
                    for item in body:
                        store.delete(item["kind"], item.get("namespace") or "", item["name"])
                    store.cond.notify_all()
                    return self.answer(200, {"resourceVersion": str(store.rv)})
        except APIError as error:
            return self.answer(400, {"error": error.message})
        if path == "/drop-streams":
            with state.lock:
                state.cut_mid_event = "mid-event=1" in query
                state.drop_epoch += 1
                sockets = [] if state.cut_mid_event else list(state.connections)
            with store.cond:
                store.cond.notify_all()
            if not state.cut_mid_event:
                for sock in sockets:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            return self.answer(200, {})
        if path == "/compact":
            with store.cond:
                store.compact()
                return self.answer(200, {"resourceVersion": str(store.rv)})
        if path == "/stop":
            self.server.api.stop()
            return self.answer(200, {})
        if path == "/start":
            self.server.api.start()
            return self.answer(200, {})
        if path == "/latency":
            state.latency = float(body.get("milliseconds", 0)) / 1000
            return self.answer(200, {})
        if path == "/throttle":
            with state.lock:
                state.throttle = {"count": int(body.get("count", 0)), "code": int(body.get("code", 429)),
                                  "retryAfterSeconds": body.get("retryAfterSeconds")}
            return self.answer(200, {})
        if path == "/hang":
            state.hang = bool(body.get("on"))
            with store.cond:
                store.cond.notify_all()
            return self.answer(200, {})
        if path == "/tokens":
            with state.lock:
                state.tokens = dict(body.get("tokens", {}))
                state.forbidden = set(body.get("forbidden", []))
            return self.answer(200, {})
        if path == "/watch410":
            if body.get("mode") not in ("event", "http"):
                return self.answer(400, {"error": "mode is event or http"})
            state.watch410 = body["mode"]
            return self.answer(200, {})
        self.answer(404, {"error": "no such control: %s" % path})

    def answer(self, code, value):
        data = json.dumps(value).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ControlServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, state, api):
        self.state = state
        self.api = api
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, ControlHandler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class APIPort:
    """The API listener, which /stop closes (with every connection) and /start opens again on the same port."""

    def __init__(self, host, port, context, state):
        self.host, self.port, self.context, self.state = host, port, context, state
        self.server = None
        self.thread = None
        self.lock = threading.Lock()
        self.start()

    def start(self):
        with self.lock:
            if self.server is not None:
                return
            self.server = APIServer((self.host, self.port), self.context, self.state)
            self.port = self.server.server_address[1]
            self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            self.thread.start()

    def stop(self):
        with self.lock:
            if self.server is None:
                return
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            with self.state.lock:
                sockets = list(self.state.connections)
            for sock in sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def parse_objects(raw):
    """Objects from JSON bytes: one object, a List (or {"items": [...]}), or a stream of objects."""
    decoder = json.JSONDecoder()
    text = raw.decode("utf-8")
    objects = []
    index = 0
    while True:
        while index < len(text) and text[index] in " \t\r\n":
            index += 1
        if index >= len(text):
            break
        value, index = decoder.raw_decode(text, index)
        if isinstance(value, dict) and isinstance(value.get("items"), list) and (value.get("kind", "List").endswith("List")):
            item_kind = value.get("kind", "List")[:-4] or None
            for item in value["items"]:
                if isinstance(item, dict):
                    if item_kind and "kind" not in item:
                        item["kind"] = item_kind
                    objects.append(item)
        elif isinstance(value, dict):
            objects.append(value)
        else:
            raise ValueError("not an object or a List")
    return objects


def host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def make_certs(directory, sans):
    """A test CA, a server certificate for 127.0.0.1/localhost (and `sans`), a client
    certificate (CN picket-client), and an unrelated CA, with openssl."""
    os.makedirs(directory, exist_ok=True)

    def openssl(*args):
        try:
            subprocess.run(["openssl", *args], check=True, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            sys.exit("kube-test-apiserver: openssl is not installed")
        except subprocess.CalledProcessError as error:
            sys.exit("kube-test-apiserver: openssl %s failed: %s" % (args[0], error.stderr.decode(errors="replace")))

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-new", *key, "-keyout", ca + "-key.pem", "-out", ca + ".pem", "-days", "30",
                "-subj", "/CN=picket test %s" % ca, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    names = ["IP:127.0.0.1", "IP:::1", "DNS:localhost"]
    for san in sans:
        try:
            ipaddress.ip_address(san)
            names.append("IP:" + san)
        except ValueError:
            names.append("DNS:" + san)
    for leaf, cn, usage, alt in (("server", "picket-test-apiserver", "serverAuth", ",".join(names)),
                                 ("client", "picket-client", "clientAuth", None)):
        openssl("req", "-new", *key, "-keyout", leaf + "-key.pem", "-out", leaf + ".csr", "-subj", "/CN=%s/O=picket" % cn)
        with open(os.path.join(directory, leaf + ".ext"), "w") as ext:
            ext.write("extendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n" % usage)
            if alt:
                ext.write("subjectAltName=%s\n" % alt)
        openssl("x509", "-req", "-in", leaf + ".csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-out", leaf + ".pem", "-days", "30", "-extfile", leaf + ".ext")


def serve(args):
    tokens = {}
    for entry in args.token:
        token, _, user = entry.partition("=")
        if not token or not user:
            sys.exit("kube-test-apiserver: --token takes TOKEN=USER: %r" % entry)
        tokens[token] = user
    state = State(tokens, args.forbidden_user, args.bookmark_interval, args.quiet)
    for path in args.objects:
        with open(path, "rb") as source:
            objects = parse_objects(source.read())
        with state.store.cond:
            for obj in objects:
                state.store.put(obj)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(args.client_ca)
    api_host, api_port = host_port(args.listen)
    api = APIPort(api_host, api_port, context, state)
    control_host, control_port = host_port(args.control_listen)
    control = ControlServer((control_host, control_port), state, api)
    threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def url(scheme, host, port):
        return "%s://%s:%d" % (scheme, "[%s]" % host if ":" in host else host, port)

    if args.ready_file:
        ready = {"api": url("https", api_host, api.port), "control": url("http", control_host, control.server_address[1]),
                 "pid": os.getpid()}
        directory = os.path.dirname(os.path.abspath(args.ready_file))
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as out:
            json.dump(ready, out)
        os.rename(out.name, args.ready_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    api.stop()
    control.shutdown()
    control.server_close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    certs = commands.add_parser("make-certs", help="make a test CA, server and client certificates in DIR")
    certs.add_argument("directory")
    certs.add_argument("--san", action="append", default=[], help="another address or name for the server certificate")
    run = commands.add_parser("serve", help="serve the API over HTTPS and the control surface over HTTP")
    run.add_argument("--cert", required=True)
    run.add_argument("--key", required=True)
    run.add_argument("--client-ca", required=True)
    run.add_argument("--listen", default="127.0.0.1:0")
    run.add_argument("--control-listen", default="127.0.0.1:0")
    run.add_argument("--ready-file")
    run.add_argument("--token", action="append", default=[])
    run.add_argument("--forbidden-user", action="append", default=[])
    run.add_argument("--objects", action="append", default=[])
    run.add_argument("--bookmark-interval", type=float, default=1.0)
    run.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.command == "make-certs":
        make_certs(args.directory, args.san)
    else:
        serve(args)


if __name__ == "__main__":
    main()
