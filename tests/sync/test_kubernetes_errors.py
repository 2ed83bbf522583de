"""How Kubernetes' answers map to transient (retried) and permanent failures, for the answers the
API server gives in situations the API double does not play: the bodies are the API server's own."""

from __future__ import annotations

import orjson

from meshc.sync.kubernetes import api_error
from meshc.sync.target import PermanentError, TransientError

# What the NamespaceLifecycle admission plugin answers for a write into a namespace being deleted
# (plugin/pkg/admission/namespace/lifecycle: NewForbidden + the NamespaceTerminating cause).
TERMINATING = orjson.dumps({
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": 'configmaps "web-envoy" is forbidden: unable to create new content in namespace shop because it '
               "is being terminated",
    "reason": "Forbidden",
    "details": {"name": "web-envoy", "kind": "configmaps",
                "causes": [{"reason": "NamespaceTerminating", "type": "NamespaceTerminating",
                            "message": "namespace shop is being terminated", "field": "metadata.namespace"}]},
    "code": 403})
RBAC = orjson.dumps({
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": 'configmaps "web-envoy" is forbidden: User "system:serviceaccount:meshc:meshc" cannot patch '
               'resource "configmaps" in API group "" in the namespace "shop"',
    "reason": "Forbidden", "details": {"name": "web-envoy", "kind": "configmaps"}, "code": 403})


def test_a_namespace_being_deleted_is_waited_out() -> None:
    error = api_error("apply ConfigMap shop/web-envoy", 403, "Forbidden", TERMINATING)
    assert isinstance(error, TransientError) and error.status == 403
    assert "because it is being terminated" in str(error) and "RBAC" not in str(error)


def test_an_rbac_refusal_stays_permanent_with_its_hint() -> None:
    error = api_error("apply ConfigMap shop/web-envoy", 403, "Forbidden", RBAC)
    assert isinstance(error, PermanentError)
    assert "check the credentials and RBAC" in str(error)


def test_a_body_that_is_no_status_is_never_shown_nor_read_for_causes() -> None:
    page = b"<html>Forbidden NamespaceTerminating Authorization: Bearer abcdef123456</html>"
    error = api_error("list Deployments", 403, "Forbidden", page)
    assert isinstance(error, PermanentError)
    assert "abcdef123456" not in str(error) and "html" not in str(error)
