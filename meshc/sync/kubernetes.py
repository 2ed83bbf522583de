"""The Kubernetes target: server-side apply (field manager `meshc`) of the bundle's objects.

Live state is one LIST per managed kind with the mesh's label selector. An object whose
`meshc.dev/config-hash` matches and whose meshc-set fields still hold their values is left alone:
a no-op sync sends only GET/LIST requests. Creates and updates go in kinds.APPLY_ORDER, prunes in
reverse, each prune re-checked on the live object and guarded by its uid and resourceVersion.

Given the previous bundle (known to be live), a plan reads only the objects of the files that
differ between the two bundles, one GET each, instead of LISTing the whole mesh (see delta.py).

The `kubernetes` client is imported only when a target is built (it takes most of a second).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from meshc.bundle import Bundle
from meshc.emit.naming import (
    CONFIG_HASH_ANNOTATION, FIELD_MANAGER, KUSTOMIZATION_PATH, MANAGED_BY, MANAGED_BY_LABEL, MESH_LABEL,
    NAMESPACE_PATH, mesh_selector,
)
from meshc.kinds import API_VERSIONS, APPLY_ORDER, OPTIONAL_KINDS, apply_sort_key, kind_rank
from meshc.sync import drift, lazy_import
from meshc.sync.delta import FileDelta, file_delta
from meshc.sync.kubeconfig import kubeconfig_problem
from meshc.sync.scrub import scrub
from meshc.sync.target import (
    Action, ApplyResult, Change, Interrupt, Interrupted, MeshIdentity, PermanentError, Plan, SyncError,
    TransientError,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

NAME = "kubernetes"
DEFAULT_WORKERS = 4              # concurrent apply requests within one kind
DEFAULT_REQUEST_TIMEOUT = 30.0   # seconds, per request
LIST_PAGE = 500
COMPARE_CHUNK = 500              # a full plan asks its interrupt before comparing each this many objects
# An incremental plan GETs each object of the changed files; past this many a LIST is cheaper.
INCREMENTAL_MAX_OBJECTS = 300
# Applies the running replica count once, when a Deployment becomes autoscaled (see _hand_over_replicas)
REPLICAS_HANDOVER_MANAGER = "meshc-replicas-handover"
Obj = dict[str, Any]
ListScope = tuple[str, str, str | None, str]   # apiVersion, kind, namespace (None: all), label selector
T = TypeVar("T")


class KubernetesTarget:
    """One cluster, reached through the official client's DynamicClient."""

    name = NAME

    def __init__(self, api_client: ApiClient, *, workers: int = DEFAULT_WORKERS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT, detect_drift: bool = True,
                 description: str = "cluster") -> None:
        self._api_client = api_client
        _default_request_timeout(api_client, request_timeout)
        self._dynamic: Any = None
        self._resources: dict[tuple[str, str], Any] = {}
        # The resourceVersion of each complete LIST made since the last take_list_versions(), by
        # (apiVersion, kind, namespace or None, label selector): watch streams start from them.
        self._list_versions: dict[ListScope, str] = {}
        # The client's discovery cache is a file per API server address in the system's temp
        # directory, shared by every process and never refreshed for a kind it lists (a kind
        # removed since, such as an uninstalled CRD, would be listed and answer 404). Each target
        # discovers the API afresh into a directory of its own.
        self._discovery = tempfile.TemporaryDirectory(prefix="meshc-discovery-")
        self.workers = max(1, workers)
        self.request_timeout = request_timeout
        self.detect_drift = detect_drift
        self.description = description

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None, *,
                        in_cluster: bool = False, **options: Any) -> KubernetesTarget:
        """A target from a kubeconfig file (optionally one of its contexts) or the in-cluster service account."""
        if kubeconfig is not None and not in_cluster:
            problem = kubeconfig_problem(kubeconfig, context)
            if problem is not None:
                raise PermanentError(f"cannot load kubeconfig {kubeconfig}: {scrub(problem)}")
        _import_client_library(in_cluster=in_cluster)
        from kubernetes.client.api_client import ApiClient
        from kubernetes.client.configuration import Configuration
        from kubernetes.config.config_exception import ConfigException

        try:
            if in_cluster:
                from kubernetes.config.incluster_config import load_incluster_config

                configuration = Configuration()
                load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                api_client = ApiClient(configuration)
                description = "in-cluster"
            else:
                from kubernetes.config.kube_config import new_client_from_config

                api_client = new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
                description = f"{kubeconfig}" + (f" (context {context})" if context else "")
        except (ConfigException, OSError, ValueError, TypeError) as error:
            where = "the in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig}"
            raise PermanentError(f"cannot load {where}: {scrub(_first_line(str(error)))}") from None
        return cls(api_client, description=description, **options)

    def __repr__(self) -> str:
        return f"KubernetesTarget({self.description!r})"

    # ---- plan -------------------------------------------------------------------------------------

    def plan(self, bundle: Bundle, *, revision: str | None = None, previous: Bundle | None = None,
             interrupt: Interrupt | None = None) -> Plan:
        if previous is not None:
            incremental = self._plan_incremental(bundle, previous, revision)
            if incremental is not None:
                return incremental
        return self._plan_full(bundle, revision, interrupt)

    def _plan_full(self, bundle: Bundle, revision: str | None, interrupt: Interrupt | None = None) -> Plan:
        mesh = str(bundle.manifest["mesh"])
        desired = sorted(desired_objects(bundle), key=apply_sort_key)
        wanted = {object_key(obj): obj for obj in desired}
        kinds = {str(o["kind"]): str(o["apiVersion"]) for o in desired}
        namespaces = _namespaces_of(desired)
        # Each live object is compared as its page arrives and then dropped: a full plan never
        # holds the whole live mesh (at 1,000 services, hundreds of MiB that a watcher's heap kept).
        found: dict[str, Change] = {}
        undesired: dict[str, Obj] = {}     # live objects of the mesh that are no longer desired
        live_workload = 0
        for key, live in self._live_items(mesh, namespaces, kinds, interrupt=interrupt):
            live_workload += live.get("kind") != "Namespace"
            obj = wanted.get(key)
            if obj is None:
                undesired[key] = live
                continue
            # comparing a large mesh takes as long as LISTing it: give way here too
            if interrupt is not None and len(found) % COMPARE_CHUNK == COMPARE_CHUNK - 1 and interrupt():
                raise Interrupted(f"kubernetes: the plan was set aside while comparing {obj['kind']}")
            found[key] = self._change(obj, live)
        # This mesh's Namespaces elsewhere are a move of the mesh: pruned as a rename, not here.
        moved = [MeshIdentity(mesh, name) for name in sorted(_namespace_names(undesired.values()) - namespaces)]
        removed = sorted((obj for obj in undesired.values() if not _is_namespace_of(obj, moved)),
                         key=apply_sort_key, reverse=True)
        changes = [found.get(key) or Change(Action.CREATE, key) for key in wanted]
        writes = {change.key for change in changes if change.action in (Action.CREATE, Action.UPDATE)}
        changes += [Change(Action.DELETE, object_key(obj), "no longer in the spec") for obj in removed]
        return Plan(NAME, tuple(changes), revision=revision, empties=_empties(live_workload, removed),
                    applied_meshes=(*moved, *self._other_meshes_in(desired, mesh)),
                    context={"mesh": mesh, "desired": {key: wanted[key] for key in writes}})

    def _other_meshes_in(self, desired: list[Obj], mesh: str) -> list[MeshIdentity]:
        """Another meshc mesh whose Namespace this bundle's Namespace is (a rename of metadata.name)."""
        wanted = [obj for obj in desired if obj.get("kind") == "Namespace"]
        others = []
        for live in self.get_objects(wanted).values():
            if live is None:
                continue
            labels = (live.get("metadata") or {}).get("labels") or {}
            if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(MESH_LABEL) not in (None, mesh):
                others.append(MeshIdentity(str(labels[MESH_LABEL]), _name(live)))
        return others

    def removal_plan(self, old: MeshIdentity, new: MeshIdentity) -> Plan | None:
        """Deleting every object of the mesh `old` (in its namespace), but never the Namespace the
        new mesh uses; None when nothing of it is live."""
        live = self.live_objects(old.name, [old.namespace])
        removed = sorted((obj for obj in live.values()
                          if not (obj.get("kind") == "Namespace" and _name(obj) == new.namespace)),
                         key=apply_sort_key, reverse=True)
        if not removed:
            return None
        why = f"mesh {old} renamed to {new}"
        return Plan(NAME, tuple(Change(Action.DELETE, object_key(obj), why) for obj in removed),
                    notes=(f"prunes the mesh applied as {old}",), context={"mesh": old.name, "desired": {}})

    def _plan_incremental(self, bundle: Bundle, previous: Bundle, revision: str | None) -> Plan | None:
        """Plan only the objects of the files that differ from `previous`; None: plan everything.

        Objects of changed or added files are read by name and compared as in a full plan.
        Objects of changed or removed files that the new bundle no longer has are read too and
        planned for prune if they still carry this mesh's labels. Everything else is trusted to be
        as `previous` left it. A move of the mesh's Namespace, or a delta of more than
        INCREMENTAL_MAX_OBJECTS objects, is planned in full.
        """
        mesh = str(bundle.manifest["mesh"])
        delta = file_delta(previous, bundle)
        if delta is None or str(previous.manifest.get("mesh")) != mesh:
            return None
        files = delta.under("kubernetes/")
        if NAMESPACE_PATH in files.changed | files.added | files.removed:
            return None
        desired = sorted(objects_in(bundle, files.new_or_changed), key=apply_sort_key)
        old = objects_in(previous, files.old_or_changed)
        if len(desired) + len(old) > INCREMENTAL_MAX_OBJECTS:
            return None
        desired_keys = {object_key(obj) for obj in desired}
        gone = sorted((obj for obj in old if object_key(obj) not in desired_keys), key=apply_sort_key, reverse=True)
        live = self.get_objects([*desired, *gone])
        changes = [self._change(obj, _managed_or_none(live[object_key(obj)], mesh)) for obj in desired]
        removed = [obj for obj in gone if _managed_or_none(live[object_key(obj)], mesh) is not None]
        changes += [Change(Action.DELETE, object_key(obj), "no longer in the spec") for obj in removed]
        empties = _incremental_empties(removed, old, desired_keys, bundle, files)
        return Plan(NAME, tuple(changes), revision=revision, empties=empties, incremental=True,
                    context={"mesh": mesh, "desired": {object_key(obj): obj for obj in desired}})

    def plan_keys(self, bundle: Bundle, keys: Iterable[str], *, revision: str | None = None,
                  paths: Iterable[str] | None = None) -> Plan:
        """Plan only the objects named by `keys` (those a watch event showed changed or gone): one
        GET each, compared as in a full plan; a key the bundle no longer has is pruned if it still
        carries this mesh's labels. What `meshc watch` corrects between full drift checks.
        `paths`: the bundle's files that hold the desired ones among `keys`, when the caller knows
        (the watch streams' index): only those are parsed, not the whole mesh."""
        mesh = str(bundle.manifest["mesh"])
        wanted = set(keys)
        candidates = desired_objects(bundle) if paths is None else objects_in(bundle, paths)
        desired = sorted((obj for obj in candidates if object_key(obj) in wanted), key=apply_sort_key)
        strays = sorted(wanted - {object_key(obj) for obj in desired})
        gone = [_key_object(key) for key in strays]
        live = self.get_objects([*desired, *gone])
        changes = [self._change(obj, _managed_or_none(live[object_key(obj)], mesh)) for obj in desired]
        changes += [Change(Action.DELETE, object_key(obj), "not in the spec")
                    for obj in gone if _managed_or_none(live[object_key(obj)], mesh) is not None
                    and obj["kind"] != "Namespace"]
        return Plan(NAME, tuple(changes), revision=revision, incremental=True,
                    context={"mesh": mesh, "desired": {object_key(obj): obj for obj in desired}})

    def changed(self, desired: Obj | None, live: Obj, mesh: str) -> bool:
        """Would a plan write `live` (seen in a watch event)? Not ours: no; ours but not desired: yes."""
        if desired is None:
            return _is_managed(live, mesh)
        return self._change(desired, live).action is not Action.UNCHANGED

    def get_objects(self, objects: list[Obj]) -> dict[str, Obj | None]:
        """The live object of each given (desired or previous) object, by key; None when absent.
        One GET each, `workers` at a time."""
        if not objects:
            return {}
        # Discovery fills a cache: do it here, not from several threads at once.
        kinds = sorted({(str(obj["apiVersion"]), str(obj["kind"])) for obj in objects})
        resources = {pair: self._resource(*pair) for pair in kinds}

        def read(obj: Obj) -> Obj | None:
            metadata = obj.get("metadata") or {}
            return self._get(resources[(str(obj["apiVersion"]), str(obj["kind"]))], str(metadata.get("name")),
                             str(metadata.get("namespace") or ""))

        with ThreadPoolExecutor(max_workers=min(self.workers, len(objects))) as pool:
            futures = [(object_key(obj), pool.submit(read, obj)) for obj in objects]
            live: dict[str, Obj | None] = {}
            errors: list[SyncError] = []
            for key, future in futures:
                try:
                    live[key] = future.result()
                except SyncError as error:
                    errors.append(error)
        if errors:
            raise errors[0]
        return live

    def live_objects(self, mesh: str, namespaces: Iterable[str], kinds: dict[str, str] | None = None, *,
                     interrupt: Interrupt | None = None) -> dict[str, Obj]:
        """Every object carrying this mesh's labels: Namespaces cluster-wide, the rest in `namespaces`.
        `interrupt` is asked before each page of each LIST (Interrupted when it says so)."""
        return dict(self._live_items(mesh, namespaces, kinds, interrupt=interrupt))

    def _live_items(self, mesh: str, namespaces: Iterable[str], kinds: dict[str, str] | None = None, *,
                    interrupt: Interrupt | None = None) -> Iterator[tuple[str, Obj]]:
        """live_objects, one (key, object) at a time, a page of a LIST after another."""
        api_versions = {**API_VERSIONS, **(kinds or {})}
        selector = mesh_selector(mesh)
        for kind in sorted(api_versions, key=kind_rank):
            if kind in OPTIONAL_KINDS and kind not in (kinds or {}) and not self._serves(api_versions[kind], kind):
                continue   # an add-on's kind the cluster lacks (cert-manager): nothing of it to prune
            resource = self._resource(api_versions[kind], kind)
            scopes = sorted(set(namespaces)) if resource.namespaced else [None]
            for namespace in scopes:
                for obj in self._list(resource, namespace, selector, interrupt):
                    if _is_managed(obj, mesh):   # a selector is a request; check what came back
                        yield object_key(obj), obj

    def _change(self, desired: Obj, live: Obj | None) -> Change:
        key = object_key(desired)
        if live is None:
            return Change(Action.CREATE, key)
        want, have = _config_hash(desired), _config_hash(live)
        if want != have or want is None:
            return Change(Action.UPDATE, key, f"config-hash {have or 'none'} -> {want or 'none'}")
        if self.detect_drift:
            paths = drift.drifted_paths(desired, live)
            if paths:
                return Change(Action.UPDATE, key, drift.describe(paths))
        return Change(Action.UNCHANGED, key)

    # ---- apply ------------------------------------------------------------------------------------

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        desired = plan.context.get("desired")
        if desired is None:
            desired = {object_key(obj): obj for obj in desired_objects(bundle)}
        result = ApplyResult(NAME)
        upserts = [c for c in plan.changes if c.action in (Action.CREATE, Action.UPDATE)]
        try:
            for _, group in itertools.groupby(upserts, key=lambda c: kind_rank(_kind_of(c.key))):
                self._run_parallel([(c, desired[c.key]) for c in group], self._apply_one, result)
            for change in plan.deletes:
                self._prune_one(change, plan.context["mesh"], result)
        except SyncError as error:
            error.partial = result
            raise
        return result

    def _apply_one(self, change: Change, obj: Obj) -> Change:
        resource = self._resource(str(obj["apiVersion"]), str(obj["kind"]))
        metadata = obj["metadata"]
        if change.action is Action.UPDATE and _leaves_replicas_to_autoscaler(obj):
            self._hand_over_replicas(resource, obj)
        self._call(f"apply {change.key}", lambda: _drained(self._dynamic.server_side_apply(
            resource, body=obj, name=metadata["name"], namespace=metadata.get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True, serialize=False,
            _request_timeout=self.request_timeout)))
        return change

    def _hand_over_replicas(self, resource: Any, obj: Obj) -> None:
        """A Deployment meshc gave `replicas` until now is autoscaled from now on. Server-side apply
        removes a field whose only owner stops applying it (the Deployment would drop to 1 pod until
        the autoscaler acts), so the running count is first applied by a second field manager too:
        the field then survives meshc's apply, and the autoscaler takes it over when it scales."""
        metadata = obj["metadata"]
        live = self._get(resource, metadata["name"], metadata.get("namespace") or "")
        replicas = ((live or {}).get("spec") or {}).get("replicas")
        if live is None or replicas is None or not _applies_replicas(live):
            return
        handover = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                    "metadata": {"name": metadata["name"], "namespace": metadata.get("namespace")},
                    "spec": {"replicas": replicas}}
        self._call(f"hand over replicas of {metadata['name']}", lambda: _drained(self._dynamic.server_side_apply(
            resource, body=handover, name=metadata["name"], namespace=metadata.get("namespace"),
            field_manager=REPLICAS_HANDOVER_MANAGER, force_conflicts=True, serialize=False,
            _request_timeout=self.request_timeout)))

    def _run_parallel(self, work: list[tuple[Change, Obj]], call: Callable[[Change, Obj], Change],
                      result: ApplyResult) -> None:
        """Apply one kind's objects concurrently; every request finishes before an error is raised."""
        if not work:
            return
        errors: list[SyncError] = []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(work))) as pool:
            futures = [pool.submit(call, change, obj) for change, obj in work]
            for future in futures:
                result.write_requests += 1
                try:
                    result.applied.append(future.result())
                except SyncError as error:
                    errors.append(error)
        if errors:
            raise errors[0]

    def _prune_one(self, change: Change, mesh: str, result: ApplyResult) -> None:
        """Delete one object, but only if the live object still carries this mesh's labels."""
        api_version, kind, namespace, name = _parse_key(change.key)
        resource = self._resource(api_version, kind)
        live = self._get(resource, name, namespace)
        if live is None or not _is_managed(live, mesh):
            return      # gone already, or someone took it over: not ours to delete
        metadata = live["metadata"]
        # delete exactly the object just checked: a replaced or changed object fails the precondition
        preconditions = {field: metadata[field] for field in ("uid", "resourceVersion") if metadata.get(field)}
        options: Obj = {"propagationPolicy": "Background"}
        if preconditions:
            options["preconditions"] = preconditions
        result.write_requests += 1
        try:
            self._call(f"delete {change.key}", lambda: _drained(self._dynamic.delete(
                resource, name=name, namespace=namespace or None, body=options, serialize=False,
                _request_timeout=self.request_timeout)))
        except PermanentError as error:
            if getattr(error, "status", None) != 404:
                raise
            return
        result.applied.append(change)

    # ---- requests ---------------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._dynamic is None:
            from kubernetes.dynamic import DynamicClient

            self._dynamic = self._call("discover the API", lambda: DynamicClient(  # type: ignore[no-untyped-call]
                self._api_client, cache_file=self._discovery_file("plans")))
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        cached = self._resources.get((api_version, kind))
        if cached is not None:
            return cached
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        client = self._client()
        # The core group lives under /api, the others under /apis: named, the client reads only
        # that group's list of kinds, where without it a core kind is looked for in every group
        # serving a "v1" (one request each: dozens on a cluster with many add-ons).
        prefix = "apis" if "/" in api_version else "api"
        try:
            resource = self._call(f"discover {api_version} {kind}",
                                  lambda: client.resources.get(prefix=prefix, api_version=api_version, kind=kind))
        except ResourceNotFoundError:
            raise PermanentError(f"the cluster does not serve {api_version} {kind}") from None
        except (KeyError, TypeError, AttributeError) as error:
            # The client's discovery re-reads the API after a 404 and, when that fails too, keeps a
            # cache it cannot read again (KeyError 'resources'): an API server that is changing or
            # failing. Transient; the next try discovers afresh with a new client.
            self._forget_discovery()
            raise TransientError(f"kubernetes: cannot discover {api_version} {kind}: the API's discovery answers "
                                 f"were inconsistent ({type(error).__name__}: {scrub(_first_line(str(error)))})") from None
        self._resources[(api_version, kind)] = resource
        return resource

    def _forget_discovery(self) -> None:
        self._dynamic = None
        self._resources.clear()
        with contextlib.suppress(OSError):
            os.remove(self._discovery_file("plans"))

    def _serves(self, api_version: str, kind: str) -> bool:
        try:
            self._resource(api_version, kind)
        except PermanentError:
            return False
        return True

    def _list(self, resource: Any, namespace: str | None, selector: str,
              interrupt: Interrupt | None = None) -> Iterator[Obj]:
        token: str | None = None
        version: str | None = None
        while True:
            if interrupt is not None and interrupt():
                raise Interrupted(f"kubernetes: the plan was set aside while listing {resource.kind}")
            answer = self._call(f"list {resource.kind}", partial(self._list_page, resource, namespace, selector, token))
            page = orjson.loads(answer.data)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", resource.group_version)
                item.setdefault("kind", resource.kind)
                yield item
            metadata = page.get("metadata") or {}
            version = version or _first_version(metadata)
            token = metadata.get("continue")
            if not token:
                if version:   # every page read: the LIST is complete
                    self._list_versions[(str(resource.group_version), str(resource.kind), namespace, selector)] = version
                return

    def take_list_versions(self) -> dict[ListScope, str]:
        """The resourceVersion of each LIST that plans read to its end since the last call (by
        apiVersion, kind, namespace or None, label selector), and forget them. A full plan compares
        every object such a LIST returned, so once it is applied, a watch of that scope can start
        from that version instead of LISTing again."""
        versions, self._list_versions = self._list_versions, {}
        return versions

    def list_versioned(self, resource: Any, namespace: str | None, selector: str,
                       each_page: Callable[[list[Obj]], None]) -> str:
        """Hand every selected object of one kind to `each_page`, a page at a time (so a large
        kind is never held whole), and return the resourceVersion to watch from after it."""
        token: str | None = None
        version: str | None = None
        while True:
            answer = self._call(f"list {resource.kind}", partial(self._list_page, resource, namespace, selector, token))
            page = orjson.loads(answer.data)
            items = page.get("items") or []
            for item in items:
                item.setdefault("apiVersion", resource.group_version)
                item.setdefault("kind", resource.kind)
            each_page(items)
            metadata = page.get("metadata") or {}
            version = version or _first_version(metadata)
            token = metadata.get("continue")
            if not token:
                return version or ""

    def resource(self, api_version: str, kind: str) -> Any:
        """The discovered API resource of a kind (PermanentError when the cluster lacks it)."""
        self._client()
        return self._resource(api_version, kind)

    def streaming_client(self, connections: int) -> Any:
        """A DynamicClient of its own for long-lived watch streams, with a connection pool big
        enough for them, so they never take the connections plans and applies use."""
        import copy

        from kubernetes.client import ApiClient
        from kubernetes.dynamic import DynamicClient

        configuration = copy.copy(self._api_client.configuration)
        configuration.connection_pool_maxsize = connections
        return self._call("discover the API", lambda: DynamicClient(  # type: ignore[no-untyped-call]
            ApiClient(configuration), cache_file=self._discovery_file("streams")))

    def _discovery_file(self, name: str) -> str:
        return os.path.join(self._discovery.name, f"{name}.json")

    def _list_page(self, resource: Any, namespace: str | None, selector: str, token: str | None) -> Any:
        return self._dynamic.get(resource, namespace=namespace, label_selector=selector, limit=LIST_PAGE,
                                 _continue=token, serialize=False, _request_timeout=self.request_timeout)

    def _get(self, resource: Any, name: str, namespace: str) -> Obj | None:
        try:
            answer = self._call(f"get {resource.kind} {name}", lambda: self._dynamic.get(
                resource, name=name, namespace=namespace or None, serialize=False,
                _request_timeout=self.request_timeout))
        except PermanentError as error:
            if getattr(error, "status", None) == 404:
                return None
            raise
        obj: Obj = orjson.loads(answer.data)
        return obj

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """Run one request; API and network failures become TransientError/PermanentError."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return request()
        except ApiException as error:
            raise api_error(what, error.status, error.reason, error.body) from None
        except (HTTPError, OSError) as error:
            raise TransientError(f"kubernetes: cannot {what}: {type(error).__name__}: "
                                 f"{scrub(_first_line(str(error)))}") from None

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]
        self._discovery.cleanup()


def _default_request_timeout(api_client: ApiClient, seconds: float) -> None:
    """Give every request of the client that names no timeout this one. The dynamic client's
    discovery (the API's groups and kinds, read before anything else) passes none, and urllib3
    then waits forever: an API server that accepts the connection but never answers would hang
    apply, plan and watch instead of failing (transiently) and being retried. Watch streams are
    left alone: they last as long as the server keeps them open (and have a client of their own,
    streaming_client)."""
    rest: Any = api_client.rest_client
    request = rest.request

    def with_timeout(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if not args and kwargs.get("_request_timeout") is None and "watch=true" not in url:
            kwargs["_request_timeout"] = seconds
        return request(method, url, *args, **kwargs)

    rest.request = with_timeout


def _first_version(metadata: Obj) -> str | None:
    """A LIST's resourceVersion, read from its first page: the version of the snapshot every
    page of a paged LIST comes from. A server that pages the current state instead (answering a
    later version on later pages) is covered too: watching from the first page's version replays
    what changed while the pages were read, where the last page's would skip it."""
    version = metadata.get("resourceVersion")
    return str(version) if version else None


# What meshc uses of the client library: the generated ApiClient and its Configuration, the
# dynamic client, and one of the library's two configuration loaders.
_CLIENT_MODULES = ("kubernetes.client.configuration", "kubernetes.client.api_client", "kubernetes.client.exceptions",
                   "kubernetes.dynamic")
_KUBECONFIG_LOADER = "kubernetes.config.kube_config"
_IN_CLUSTER_LOADER = "kubernetes.config.incluster_config"
# What the package's `__init__` imports, each as `from . import name`
_PACKAGES = ("client", "config", "dynamic", "watch", "stream", "utils", "leaderelection", "informer")


def _import_client_library(*, in_cluster: bool = False) -> None:
    """Import the parts of the `kubernetes` package a target uses, and the configuration loader
    it needs (the kubeconfig's, or the in-cluster service account's).

    The package's `__init__` imports every part: websocket streams, leader election, informers,
    YAML helpers and both loaders (the kubeconfig's brings oauthlib and requests_oauthlib). It
    runs only once anything asks the package for a name it has not loaded
    (lazy_import.package_without_init), so `import kubernetes` elsewhere in the process still
    sees the whole library; so do `kubernetes.config` (both loaders) and `kubernetes.utils`
    (the REST client needs only its retry and keep-alive modules). `kubernetes_validate` is
    hidden while the dynamic client loads: it imports it (jsonschema and its schema registries)
    only for `DynamicClient.validate`, which meshc never calls; it stays importable for
    anything else."""
    if "kubernetes" not in sys.modules:
        lazy_import.package_without_init("kubernetes", submodules=_PACKAGES, version=True)   # read by discovery
        lazy_import.package_without_init("kubernetes.config")
        lazy_import.package_without_init("kubernetes.utils")   # the REST client needs two of its modules
    with lazy_import.hidden("kubernetes_validate"):
        lazy_import.import_all(*_CLIENT_MODULES, _IN_CLUSTER_LOADER if in_cluster else _KUBECONFIG_LOADER)


def _drained(response: Any) -> bytes:
    """Read the answer, so its connection goes back to the pool instead of being reset."""
    data: bytes = response.data
    return data


# ---- errors ---------------------------------------------------------------------------------------

_TRANSIENT_STATUSES = frozenset({0, 408, 409, 425, 429, 500, 502, 503, 504})


def api_error(what: str, status: int | None, reason: str | None, body: Any) -> SyncError:
    """A Status answer as TransientError (5xx, 409, 429, timeouts) or PermanentError (the rest)."""
    code = int(status or 0)
    message = _status_message(body) or scrub(reason or "") or "no message"
    if code == 403 and _namespace_terminating(body):
        # Someone deleted the namespace: writes into it are refused until it is gone, then work.
        error: SyncError = TransientError(f"kubernetes: cannot {what} yet: {code} {message} (retry once the "
                                          "namespace is deleted)")
    elif code in (401, 403):
        hint = " (check the credentials and RBAC of the kubeconfig/service account)"
        error = PermanentError(f"kubernetes: not allowed to {what}: {code} {message}{hint}")
    elif code in _TRANSIENT_STATUSES or code >= 500:
        error = TransientError(f"kubernetes: cannot {what}: {code} {message}")
    else:
        error = PermanentError(f"kubernetes: cannot {what}: {code} {message}")
    error.status = code
    return error


def _namespace_terminating(body: Any) -> bool:
    """A 403 whose Status names the NamespaceTerminating cause (the NamespaceLifecycle admission)."""
    status = _status_of(body)
    causes = (status.get("details") or {}).get("causes") if status else None
    return isinstance(causes, list) and any(isinstance(c, dict) and c.get("type") == "NamespaceTerminating"
                                            for c in causes)


def _status_of(body: Any) -> dict[str, Any] | None:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str) or not body:
        return None
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return status if isinstance(status, dict) and status.get("kind") == "Status" else None


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status answer, scrubbed; "" for anything else. A body that is
    not a Status (a proxy's or load balancer's HTML page) is never shown: it may echo request
    headers, tokens included."""
    status = _status_of(body)
    return scrub(_first_line(str(status.get("message", "")))) if status else ""


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


# ---- objects --------------------------------------------------------------------------------------

def desired_objects(bundle: Bundle) -> list[Obj]:
    """The bundle's Kubernetes objects."""
    return objects_in(bundle, bundle.paths("kubernetes/"))


def object_files(bundle: Bundle) -> dict[str, str]:
    """Which file of the bundle holds each Kubernetes object, by object key."""
    return {object_key(obj): path for path in bundle.paths("kubernetes/") if path != KUSTOMIZATION_PATH
            for obj in _file_objects(bundle, path)}


def file_objects(bundle: Bundle, path: str) -> dict[str, Obj]:
    """The objects of one of the bundle's files, by object key."""
    return {object_key(obj): obj for obj in _file_objects(bundle, path)}


def objects_in(bundle: Bundle, paths: Iterable[str]) -> list[Obj]:
    """The Kubernetes objects of some of the bundle's files (in path order). meshc writes each
    document as JSON (valid YAML) joined by `---` lines, and JSON text never holds a raw newline,
    so splitting there and parsing with orjson gives the same objects as a YAML parser, ~20x
    faster; other YAML takes the slow path."""
    objects: list[Obj] = []
    for path in sorted(paths):
        if path == KUSTOMIZATION_PATH or not path.startswith("kubernetes/"):
            continue
        objects += _file_objects(bundle, path)
    return objects


def _file_objects(bundle: Bundle, path: str) -> list[Obj]:
    try:
        docs = [orjson.loads(part) for part in bundle.files[path].split(b"\n---\n") if part.strip()]
    except orjson.JSONDecodeError:
        docs = bundle.documents(path)
    return [doc for doc in docs if isinstance(doc, dict)]


def object_key(obj: Obj) -> str:
    """`apps/v1 Deployment shop/catalog-v1`, `v1 Namespace shop`: how plans name objects."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))
    return f"{obj.get('apiVersion')} {obj.get('kind')} {name}"


def _parse_key(key: str) -> tuple[str, str, str, str]:
    api_version, kind, name = key.split(" ", 2)
    namespace, _, short = name.rpartition("/")
    return api_version, kind, namespace, short


def _key_object(key: str) -> Obj:
    """A stand-in object for a key (enough to GET it by name)."""
    api_version, kind, namespace, name = _parse_key(key)
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def _kind_of(key: str) -> str:
    return key.split(" ", 2)[1]


def _leaves_replicas_to_autoscaler(obj: Obj) -> bool:
    return obj.get("kind") == "Deployment" and "replicas" not in (obj.get("spec") or {})


def _applies_replicas(live: Obj) -> bool:
    """Whether meshc's own apply is an owner of the live object's spec.replicas."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply":
            if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
                return True
    return False


def _config_hash(obj: Obj) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(CONFIG_HASH_ANNOTATION)
    return str(value) if value is not None else None


def _is_managed(obj: Obj, mesh: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(MESH_LABEL) == mesh)


def _namespaces_of(objects: Iterable[Obj]) -> set[str]:
    namespaces = set()
    for obj in objects:
        metadata = obj.get("metadata") or {}
        if obj.get("kind") == "Namespace":
            namespaces.add(str(metadata.get("name")))
        elif metadata.get("namespace"):
            namespaces.add(str(metadata["namespace"]))
    return namespaces


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _namespace_names(objects: Iterable[Obj]) -> set[str]:
    return {_name(obj) for obj in objects if obj.get("kind") == "Namespace"}


def _is_namespace_of(obj: Obj, meshes: list[MeshIdentity]) -> bool:
    return obj.get("kind") == "Namespace" and any(_name(obj) == mesh.namespace for mesh in meshes)


def _managed_or_none(obj: Obj | None, mesh: str) -> Obj | None:
    """What a LIST with the mesh's selector would have returned for this object."""
    return obj if obj is not None and _is_managed(obj, mesh) else None


def _incremental_empties(removed: list[Obj], old: list[Obj], desired_keys: set[str], bundle: Bundle,
                         files: FileDelta) -> bool:
    """_empties for an incremental plan, where `previous` stands for what is live: the prune takes
    every workload object of the mesh when none of the previous ones stays desired."""
    if not removed:
        return False
    if any(obj.get("kind") == "Namespace" for obj in removed):
        return True
    if any(obj.get("kind") != "Namespace" and object_key(obj) in desired_keys for obj in old):
        return False
    # objects of unchanged files stay; read them (lazily: the first one settles it) only now
    unchanged = (path for path in sorted(files.unchanged) if path not in (NAMESPACE_PATH, KUSTOMIZATION_PATH))
    return not any(obj.get("kind") != "Namespace" for path in unchanged for obj in _file_objects(bundle, path))


def _empties(live_workload: int, removed: list[Obj]) -> bool:
    """Deleting a Namespace takes everything in it; deleting every live workload object (of the
    `live_workload` there are) empties the mesh."""
    if any(obj.get("kind") == "Namespace" for obj in removed):
        return True
    return bool(live_workload) and len([o for o in removed if o.get("kind") != "Namespace"]) == live_workload


__all__ = ["APPLY_ORDER", "KubernetesTarget", "api_error", "object_key"]
