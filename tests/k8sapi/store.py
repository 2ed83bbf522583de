"""The in-memory object store: the registry logic behind every verb, under one lock."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime
import ipaddress
import json
import random
import string
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.k8sapi import errors, managed, patches, strategy
from tests.k8sapi.events import Event, EventLog, snapshot
from tests.k8sapi.catalog import NAMESPACES, RESOURCES, ResourceType
from tests.k8sapi.label_selectors import field_matcher, label_matcher

Object = dict[str, Any]
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
METADATA_ORDER = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation",
                  "creationTimestamp", "deletionTimestamp", "labels", "annotations", "ownerReferences",
                  "finalizers", "managedFields")
CONTROLLER = "kube-controller-manager"


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    """What a verb answers: the body, the HTTP code, and whether the store changed."""
    body: Object
    code: int = 200
    changed: bool = False


class Store:
    def __init__(self, seed_namespace_contents: bool = True, clock: Callable[[], str] = utc_now) -> None:
        self._lock = threading.RLock()
        self._objects: dict[ResourceType, dict[tuple[str, str], Object]] = {r: {} for r in RESOURCES}
        self._revision = 0
        self._next_ip = int(ipaddress.IPv4Address("10.96.0.1"))
        self._seed_namespace_contents = seed_namespace_contents
        self._clock = clock
        self.events = EventLog(self._lock)
        self._bootstrap()

    @property
    def revision(self) -> int:
        return self._revision

    # ---- reads ------------------------------------------------------------------------------------

    def get(self, resource: ResourceType, namespace: str, name: str) -> Object:
        with self._lock:
            return copy.deepcopy(self._existing(resource, namespace, name))

    def peek(self, resource: ResourceType, namespace: str, name: str) -> Object | None:
        with self._lock:
            found = self._objects[resource].get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def list_objects(self, resource: ResourceType, namespace: str | None, query: dict[str, str]) -> Object:
        with self._lock:
            items = list(self._selected(resource, namespace, query))
            listing: Object = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                               "metadata": {"resourceVersion": str(self._revision)}}
            items = self._page(items, query, listing["metadata"])
            listing["items"] = [_as_list_item(obj) for obj in items]
            return listing

    def _selected(self, resource: ResourceType, namespace: str | None, query: dict[str, str]) -> Iterator[Object]:
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(query.get("fieldSelector"))
        for (obj_namespace, _), obj in sorted(self._objects[resource].items()):
            if namespace and obj_namespace != namespace:
                continue
            if labels(obj["metadata"].get("labels") or {}) and fields(obj):
                yield obj

    def watch_start(self, resource: ResourceType, namespace: str | None,
                    query: dict[str, str]) -> tuple[list[Object], int]:
        """What a watch from resourceVersion 0 (or none) begins with: the current objects, as
        synthetic ADDED events, and the revision to follow from."""
        with self._lock:
            return [snapshot(obj, resource) for obj in self._selected(resource, namespace, query)], self._revision

    def watch_matcher(self, resource: ResourceType, namespace: str | None,
                      query: dict[str, str]) -> Callable[[Event], bool]:
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(query.get("fieldSelector"))

        def matches(event: Event) -> bool:
            if event.resource is not resource or (namespace and event.namespace != namespace):
                return False
            return labels(event.object["metadata"].get("labels") or {}) and fields(event.object)

        return matches

    @staticmethod
    def _page(items: list[Object], query: dict[str, str], metadata: Object) -> list[Object]:
        start = 0
        if query.get("continue"):
            try:
                start = int(json.loads(base64.urlsafe_b64decode(query["continue"]))["start"])
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("invalid continue token") from None
        limit = int(query.get("limit") or 0)
        if limit <= 0 or start + limit >= len(items):
            return items[start:]
        token = json.dumps({"start": start + limit}).encode()
        metadata["continue"] = base64.urlsafe_b64encode(token).decode()
        metadata["remainingItemCount"] = len(items) - start - limit
        return items[start:start + limit]

    # ---- writes -----------------------------------------------------------------------------------

    def create(self, resource: ResourceType, namespace: str, body: Object, manager: str,
               dry_run: bool = False) -> Outcome:
        with self._lock:
            obj = self._checked_body(resource, namespace, body, name=None)
            metadata = obj["metadata"]
            if metadata.get("resourceVersion"):
                raise errors.bad_request("resourceVersion should not be set on objects to be created")
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = metadata["generateName"] + "".join(random.choices(string.ascii_lowercase, k=5))
            self._require_namespace(resource, namespace)
            if (namespace, metadata.get("name", "")) in self._objects[resource]:
                raise errors.already_exists(resource, metadata["name"])
            strategy.prepare_create(resource, obj)
            obj = self._admitted(resource, None, obj)
            managers = managed.record_update({}, obj, {}, manager, resource.api_version)
            return self._commit(resource, None, obj, managers, (manager, "Update"), dry_run)

    def replace(self, resource: ResourceType, namespace: str, name: str, body: Object, manager: str,
                dry_run: bool = False) -> Outcome:
        with self._lock:
            live = self._existing(resource, namespace, name)
            obj = self._checked_body(resource, namespace, body, name)
            wanted_version = obj["metadata"].get("resourceVersion")
            if wanted_version and wanted_version != live["metadata"]["resourceVersion"]:
                raise errors.conflict(resource, name, errors.STALE_OBJECT)
            return self._update(resource, live, obj, manager, dry_run)

    def patch(self, resource: ResourceType, namespace: str, name: str, content_type: str, patch: Any,
              manager: str, dry_run: bool = False) -> Outcome:
        with self._lock:
            live = self._existing(resource, namespace, name)
            try:
                obj = _patched(live, content_type, patch)
            except patches.PatchError as error:
                raise errors.ApiError(422, "Invalid", str(error), {}) from None
            if not isinstance(obj, dict):
                raise errors.bad_request("the patch did not produce an object")
            obj = self._checked_body(resource, namespace, obj, name)
            wanted_version = obj["metadata"].get("resourceVersion")
            if wanted_version and wanted_version != live["metadata"]["resourceVersion"]:
                raise errors.conflict(resource, name, errors.STALE_OBJECT)
            return self._update(resource, live, obj, manager, dry_run)

    def apply(self, resource: ResourceType, namespace: str, name: str, config: Object, manager: str,
              force: bool, dry_run: bool = False) -> Outcome:
        with self._lock:
            self._check_apply_config(resource, namespace, name, config)
            live = self._objects[resource].get((namespace, name))
            wanted_version = config["metadata"].get("resourceVersion")
            if live is not None and wanted_version and wanted_version != live["metadata"]["resourceVersion"]:
                raise errors.conflict(resource, name, errors.STALE_OBJECT)
            if live is None:
                self._require_namespace(resource, namespace)
            base = live or _skeleton(resource, namespace, name)
            merged, managers = managed.apply(copy.deepcopy(base), config, _managers_of(base), manager,
                                             resource.api_version)
            if live is None:
                strategy.prepare_create(resource, merged)
            obj = self._admitted(resource, live, merged)
            try:
                managers, _ = managed.resolve(base, obj, managers, (manager, "Apply"), force)
            except managed.FieldConflicts as conflicts:
                raise errors.ApiError(409, "Conflict", str(conflicts), {"causes": conflicts.causes()}) from None
            return self._commit(resource, live, obj, managers, (manager, "Apply"), dry_run)

    def delete(self, resource: ResourceType, namespace: str, name: str, options: Object,
               dry_run: bool = False) -> Outcome:
        with self._lock:
            live = self._existing(resource, namespace, name)
            _check_preconditions(resource, live, options.get("preconditions") or {})
            answer = self._deleted_answer(resource, live)
            if dry_run:
                return Outcome(answer)
            self._remove(resource, namespace, name)
            return Outcome(answer, 200, True)

    def delete_collection(self, resource: ResourceType, namespace: str | None, query: dict[str, str],
                          dry_run: bool = False) -> Outcome:
        with self._lock:
            doomed = list(self._selected(resource, namespace, query))
            if not dry_run:
                for obj in doomed:
                    self._remove(resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            listing = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                       "metadata": {"resourceVersion": str(self._revision)},
                       "items": [_as_list_item(obj) for obj in doomed]}
            return Outcome(listing, 200, bool(doomed) and not dry_run)

    # ---- the write pipeline -------------------------------------------------------------------------

    def _update(self, resource: ResourceType, live: Object, obj: Object, manager: str, dry_run: bool) -> Outcome:
        if "managedFields" not in obj["metadata"]:
            obj["metadata"]["managedFields"] = copy.deepcopy(live["metadata"].get("managedFields", []))
        strategy.prepare_update(resource, obj, live)
        obj = self._admitted(resource, live, obj)
        managers = managed.record_update(live, obj, _managers_of(obj), manager, resource.api_version)
        return self._commit(resource, live, obj, managers, (manager, "Update"), dry_run)

    def _admitted(self, resource: ResourceType, live: Object | None, obj: Object) -> Object:
        """Defaulted and validated, as admission and the registry strategy leave it."""
        obj = copy.deepcopy(obj)
        strategy.set_defaults(resource, obj, self._allocate_ip)
        causes = strategy.validate(resource, obj, live)
        if causes:
            raise errors.invalid(resource, obj["metadata"].get("name", ""), causes)
        return obj

    def _commit(self, resource: ResourceType, live: Object | None, obj: Object, managers: managed.Managers,
                actor: tuple[str, str], dry_run: bool) -> Outcome:
        metadata = obj["metadata"]
        _set_system_metadata(resource, metadata, live, self._clock)
        previous = _managers_of(live) if live else {}
        if actor in managers and (live is None or _content(live) != _content(obj)
                                  or previous.get(actor) is None
                                  or previous[actor].fields != managers[actor].fields):
            managers[actor] = dataclasses.replace(managers[actor], time=self._clock())
        if resource.has_generation:
            changed_spec = live is not None and _spec(live) != _spec(obj)
            metadata["generation"] = (live["metadata"].get("generation", 1) + changed_spec) if live else 1
        metadata["managedFields"] = managed.encode(managers)
        if not metadata["managedFields"]:
            del metadata["managedFields"]
        obj = _ordered(obj, metadata)
        if live is not None and obj == live:
            return Outcome(copy.deepcopy(live))
        code = 201 if live is None else 200
        if dry_run:
            return Outcome(obj, code)
        stored = self._store(resource, obj)
        if resource is NAMESPACES and live is None and self._seed_namespace_contents:
            self._seed_namespace(metadata["name"])
        return Outcome(stored, code, True)

    def _store(self, resource: ResourceType, obj: Object) -> Object:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        obj = _ordered(obj, obj["metadata"])
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        stored = copy.deepcopy(obj)
        kind = "MODIFIED" if key in self._objects[resource] else "ADDED"
        self._objects[resource][key] = stored
        self.events.record(Event(self._revision, kind, resource, key[0], snapshot(stored, resource)))
        return obj

    def _remove(self, resource: ResourceType, namespace: str, name: str) -> None:
        if resource is NAMESPACES:   # the namespace controller empties it first
            for other in RESOURCES:
                for key in [key for key in self._objects[other] if other.namespaced and key[0] == name]:
                    self._remove(other, *key)
        gone = self._objects[resource].pop((namespace, name))
        self._revision += 1
        self.events.record(Event(self._revision, "DELETED", resource, namespace,
                                 snapshot(gone, resource, self._revision)))

    # ---- checks -------------------------------------------------------------------------------------

    def _existing(self, resource: ResourceType, namespace: str, name: str) -> Object:
        found = self._objects[resource].get((namespace, name))
        if found is None:
            raise errors.not_found(resource, name)
        return found

    def _require_namespace(self, resource: ResourceType, namespace: str) -> None:
        if resource.namespaced and ("", namespace) not in self._objects[NAMESPACES]:
            raise errors.not_found(NAMESPACES, namespace)

    @staticmethod
    def _checked_body(resource: ResourceType, namespace: str, body: Any, name: str | None) -> Object:
        """A create/update body: kind and apiVersion default to the URL's, names must agree with it."""
        if not isinstance(body, dict):
            raise errors.bad_request("the request body is not a JSON object")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        if (obj["apiVersion"], obj["kind"]) != (resource.api_version, resource.kind):
            raise errors.bad_request(f"the API version in the data ({obj['apiVersion']}) does not match the "
                                     f"expected API version ({resource.api_version}) or the kind "
                                     f"({obj['kind']}) is not {resource.kind}")
        problem = strategy.decode_errors(resource, obj)
        if problem:
            raise errors.bad_request(problem)
        _check_names(resource, namespace, name, obj["metadata"])
        return obj

    @staticmethod
    def _check_apply_config(resource: ResourceType, namespace: str, name: str, config: Any) -> None:
        if not isinstance(config, dict) or not isinstance(config.setdefault("metadata", {}), dict):
            raise errors.bad_request("error decoding YAML: the apply configuration is not an object")
        if config.get("apiVersion") != resource.api_version:
            raise errors.bad_request("Incorrect version specified in apply patch. Specified patch version: "
                                     f"{config.get('apiVersion', '')}, expected: {resource.api_version}")
        if config.get("kind") != resource.kind:
            raise errors.bad_request(f"Incorrect kind specified in apply patch. Specified patch kind: "
                                     f"{config.get('kind', '')}, expected: {resource.kind}")
        problem = strategy.decode_errors(resource, config)
        if problem:
            raise errors.bad_request(problem)
        if config["metadata"].get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        _check_names(resource, namespace, name, config["metadata"])

    # ---- helpers for bootstrap and defaults ---------------------------------------------------------

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return str(ipaddress.IPv4Address(self._next_ip))

    def _bootstrap(self) -> None:
        for namespace in SYSTEM_NAMESPACES:
            self.create(NAMESPACES, "", {"metadata": {"name": namespace}}, "kube-apiserver")
        kubernetes = {"metadata": {"name": "kubernetes", "labels": {"component": "apiserver",
                                                                    "provider": "kubernetes"}},
                      "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443,
                                                                     "targetPort": 6443}]}}
        self.create(_resource("services"), "default", kubernetes, "kube-apiserver")

    def _seed_namespace(self, namespace: str) -> None:
        """What controllers add to every namespace (synchronously here, eventually on a real cluster)."""
        certificate = "-----BEGIN CERTIFICATE-----\nTEST-DOUBLE\n-----END CERTIFICATE-----\n"
        root_ca = {"metadata": {"name": "kube-root-ca.crt", "annotations": {
            "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver "
                                         "when using internal endpoints such as the internal service IP or "
                                         "kubernetes.default.svc. No other usage is guaranteed across "
                                         "distributions of Kubernetes clusters."}},
                   "data": {"ca.crt": certificate}}
        self.create(_resource("configmaps"), namespace, root_ca, CONTROLLER)
        self.create(_resource("serviceaccounts"), namespace, {"metadata": {"name": "default"}}, CONTROLLER)

    def _deleted_answer(self, resource: ResourceType, live: Object) -> Object:
        if resource is NAMESPACES:
            answer = copy.deepcopy(live)
            answer["metadata"]["deletionTimestamp"] = self._clock()
            answer["status"] = {"phase": "Terminating"}
            return answer
        if resource.returns_deleted_object:
            return copy.deepcopy(live)
        details: Object = {"name": live["metadata"]["name"]}
        if resource.group:
            details["group"] = resource.group
        details.update({"kind": resource.plural, "uid": live["metadata"]["uid"]})
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _resource(plural: str) -> ResourceType:
    return next(r for r in RESOURCES if r.plural == plural)


def _skeleton(resource: ResourceType, namespace: str, name: str) -> Object:
    metadata = {"name": name, **({"namespace": namespace} if resource.namespaced else {})}
    return {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": metadata}


def _managers_of(obj: Object) -> managed.Managers:
    return managed.decode(obj.get("metadata", {}).get("managedFields"))


def _patched(live: Object, content_type: str, patch: Any) -> Any:
    if content_type == patches.MERGE:
        return patches.merge_patch(live, patch)
    if content_type == patches.STRATEGIC:
        return patches.strategic_merge_patch(live, patch)
    return patches.json_patch(live, patch)


def _check_names(resource: ResourceType, namespace: str, name: str | None, metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise errors.bad_request("metadata must be an object")
    if name is not None and metadata.setdefault("name", name) != name:
        raise errors.bad_request(f"the name of the object ({metadata['name']}) does not match the name on "
                                 f"the URL ({name})")
    if not resource.namespaced:
        metadata.pop("namespace", None)
        return
    if metadata.setdefault("namespace", namespace) != namespace:
        raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                 "the request")


def _check_preconditions(resource: ResourceType, live: Object, preconditions: Object) -> None:
    metadata = live["metadata"]
    for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        wanted = preconditions.get(field)
        if wanted and wanted != metadata[field]:
            raise errors.conflict(resource, metadata["name"], f"Precondition failed: {label} in precondition: "
                                  f"{wanted}, {label} in object meta: {metadata[field]}")


def _set_system_metadata(resource: ResourceType, metadata: Object, live: Object | None,
                         clock: Callable[[], str]) -> None:
    for field in ("generation", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        metadata.pop(field, None)
    if live is None:
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = clock()
        metadata.pop("resourceVersion", None)
        return
    for field in ("uid", "creationTimestamp", "resourceVersion"):
        metadata[field] = live["metadata"][field]


def _content(obj: Object) -> Object:
    """An object without the bookkeeping a no-op write would still touch."""
    view = copy.deepcopy(obj)
    for field in ("managedFields", "resourceVersion", "generation"):
        view["metadata"].pop(field, None)
    return view


def _spec(obj: Object) -> Object:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _ordered(obj: Object, metadata: Object) -> Object:
    """apiVersion, kind and metadata first, metadata fields in the server's order: for people reading dumps."""
    known = {field: metadata[field] for field in METADATA_ORDER if field in metadata}
    ordered_metadata = {**known, **{k: v for k, v in metadata.items() if k not in known}}
    rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": ordered_metadata, **rest}


def _as_list_item(obj: Object) -> Object:
    """LIST responses carry kind and apiVersion on the list only, as the real server does.

    The item shares its nested values with the stored object: stored objects are never changed in
    place (every write stores a fresh deep copy, see _store), so the response may be serialized
    after the lock is released without copying 40 MB of a large mesh first."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
