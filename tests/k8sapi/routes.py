"""Routing of API paths to discovery documents and to the verbs of the store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.k8sapi import catalog, errors, patches
from tests.k8sapi.catalog import ResourceType
from tests.k8sapi.events import TooOld
from tests.k8sapi.store import Outcome, Store

READ_METHODS = frozenset({"GET", "HEAD"})
PATCH_TYPES = (patches.MERGE, patches.STRATEGIC, patches.JSON_PATCH, patches.APPLY)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes = b""
    user_agent: str = ""

    @property
    def media_type(self) -> str:
        return self.content_type.split(";")[0].strip().lower()

    @property
    def field_manager(self) -> str:
        """The `fieldManager` parameter, else the user agent's product name, as the server defaults it."""
        return self.query.get("fieldManager") or self.user_agent.split("/")[0]


@dataclass
class Response:
    code: int
    body: dict[str, Any]
    changed: bool = False
    injected: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[dict[str, Any]] | None = None   # a watch: events sent one JSON line each
    cut: bool = False   # the connection is closed half-way through the body (a test's fault)


@dataclass(frozen=True)
class Target:
    resource: ResourceType
    namespace: str
    name: str | None


def route(store: Store, request: Request, server_address: str) -> Response:
    """Serve one request; failures are raised as `errors.ApiError`."""
    parts = [part for part in request.path.split("/") if part]
    document = discovery(parts, server_address)
    if document is not None:
        if request.method not in READ_METHODS:
            raise errors.method_not_allowed(request.method)
        return Response(200, document)
    target = parse_target(parts)
    verb = VERBS.get(request.method)
    if verb is None:
        raise errors.method_not_allowed(request.method)
    if request.method == "GET" and not target.name and request.query.get("watch") in ("true", "1"):
        return watch_stream(store, target, request)
    outcome = verb(store, target, request)
    return Response(outcome.code, outcome.body, changed=outcome.changed)


def discovery(parts: list[str], server_address: str) -> dict[str, Any] | None:
    if parts == ["version"]:
        return dict(catalog.SERVER_VERSION)
    if parts == ["api"]:
        return catalog.api_versions(server_address)
    if parts == ["apis"]:
        return catalog.api_group_list()
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in catalog.groups():
        return catalog.api_group(parts[1])
    if parts[:1] == ["api"] and len(parts) == 2 or parts[:1] == ["apis"] and len(parts) == 3:
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        resources = catalog.api_resource_list(group, version)
        if resources is None:
            raise errors.unknown_path()
        return resources
    return None


def parse_target(parts: list[str]) -> Target:
    """The resource, namespace and name an object or collection path names."""
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise errors.unknown_path()
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = catalog.find(group, version, rest[0])
    if resource is None or len(rest) > 2 or (namespace and not resource.namespaced):
        raise errors.unknown_path()
    name = rest[1] if len(rest) == 2 else None
    if resource.namespaced and name and not namespace:
        raise errors.unknown_path()
    return Target(resource, namespace, name)


def _dry_run(request: Request) -> bool:
    value = request.query.get("dryRun")
    if value not in (None, "", "All"):
        raise errors.bad_request(f'Invalid dry run value: "{value}"; supported values: "All"')
    return value == "All"


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError as error:
        raise errors.bad_request(f"the request body is not valid JSON: {error}") from None


def _yaml_body(request: Request) -> Any:
    """Apply bodies may be YAML; JSON, which every client here sends, is YAML too."""
    try:
        return json.loads(request.body)
    except ValueError:
        pass
    try:
        return yaml.safe_load(request.body)
    except yaml.YAMLError as error:
        raise errors.bad_request(f"error decoding YAML: {error}") from None


def _get(store: Store, target: Target, request: Request) -> Outcome:
    if target.name:
        return Outcome(store.get(target.resource, target.namespace, target.name))
    return Outcome(store.list_objects(target.resource, target.namespace or None, request.query))


DEFAULT_WATCH_SECONDS = 1800   # the real server picks 30-60 minutes when no timeoutSeconds is given


def watch_stream(store: Store, target: Target, request: Request) -> Response:
    """`GET <collection>?watch=true`: ADDED/MODIFIED/DELETED events after `resourceVersion`
    (with none or "0", the current objects first), BOOKMARKs when asked for, a 410 Expired ERROR
    event when the version is older than the history kept."""
    if target.name:
        raise errors.method_not_allowed("watch of a single object by path (use a fieldSelector)")
    query, namespace = request.query, target.namespace or None
    try:
        since = int(query.get("resourceVersion") or 0)
        seconds = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
    except ValueError:
        raise errors.bad_request("resourceVersion and timeoutSeconds must be numbers") from None
    matcher = store.watch_matcher(target.resource, namespace, query)   # a bad selector fails now
    bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
    resource = target.resource

    def events() -> Iterator[dict[str, Any]]:
        after = since
        if since == 0:
            initial, after = store.watch_start(resource, namespace, query)
            yield from ({"type": "ADDED", "object": obj} for obj in initial)
        try:
            for event in store.events.follow(after, matcher, time.monotonic() + seconds, time.monotonic):
                if isinstance(event, int):
                    if bookmarks:
                        yield {"type": "BOOKMARK", "object": {"kind": resource.kind, "apiVersion": resource.api_version,
                                                               "metadata": {"resourceVersion": str(event)}}}
                    continue
                yield {"type": event.type, "object": event.object}
        except TooOld as old:
            status = errors.from_code(410, f"too old resource version: {old.args[0]} ({store.revision})").status()
            status["reason"] = "Expired"
            yield {"type": "ERROR", "object": status}

    return Response(200, {}, stream=events())


def _post(store: Store, target: Target, request: Request) -> Outcome:
    if target.name or (target.resource.namespaced and not target.namespace):
        raise errors.method_not_allowed(request.method)
    return store.create(target.resource, target.namespace, _json_body(request), request.field_manager,
                        _dry_run(request))


def _put(store: Store, target: Target, request: Request) -> Outcome:
    if not target.name:
        raise errors.method_not_allowed(request.method)
    return store.replace(target.resource, target.namespace, target.name, _json_body(request),
                         request.field_manager, _dry_run(request))


def _patch(store: Store, target: Target, request: Request) -> Outcome:
    if not target.name:
        raise errors.method_not_allowed(request.method)
    if request.media_type not in PATCH_TYPES:
        raise errors.unsupported_media_type(request.content_type)
    if request.media_type != patches.APPLY:
        return store.patch(target.resource, target.namespace, target.name, request.media_type,
                           _json_body(request), request.field_manager, _dry_run(request))
    if not request.query.get("fieldManager"):
        raise errors.missing_apply_field_manager()
    force = request.query.get("force", "false").lower() == "true"
    return store.apply(target.resource, target.namespace, target.name, _yaml_body(request),
                       request.query["fieldManager"], force, _dry_run(request))


def _delete(store: Store, target: Target, request: Request) -> Outcome:
    if target.name is None:
        return store.delete_collection(target.resource, target.namespace or None, request.query, _dry_run(request))
    options = _json_body(request)
    return store.delete(target.resource, target.namespace, target.name,
                        options if isinstance(options, dict) else {}, _dry_run(request))


VERBS = {"GET": _get, "POST": _post, "PUT": _put, "PATCH": _patch, "DELETE": _delete}


