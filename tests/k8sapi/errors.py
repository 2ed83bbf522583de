"""Kubernetes `Status` failures, shaped as the API server returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.k8sapi.catalog import ResourceType

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _details(resource: ResourceType, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    details.update(extra)
    return details


def not_found(resource: ResourceType, name: str) -> ApiError:
    message = f'{resource.group_resource} "{name}" not found'
    return ApiError(404, "NotFound", message, _details(resource, name))


def unknown_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(resource: ResourceType, name: str) -> ApiError:
    message = f'{resource.group_resource} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(resource, name))


def conflict(resource: ResourceType, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {resource.group_resource} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(resource, name))


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(resource: ResourceType, name: str, causes: list[dict[str, str]]) -> ApiError:
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    message = f'{resource.kind}{"." + resource.group if resource.group else ""} "{name}" is invalid: {summary}'
    details: dict[str, Any] = {"name": name, **({"group": resource.group} if resource.group else {}),
                               "kind": resource.kind}
    details["causes"] = [{"reason": c["reason"], "message": c["message"], "field": c["field"]} for c in causes]
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, {})


def method_not_allowed(method: str) -> ApiError:
    message = f"the server does not allow this method on the requested resource ({method})"
    return ApiError(405, "MethodNotAllowed", message, {})


def missing_apply_field_manager() -> ApiError:
    message = "Required value: is required for apply patch"
    cause = {"reason": "FieldValueRequired", "message": message, "field": "fieldManager"}
    return ApiError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: fieldManager: {message}',
                    {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [cause]})


def unsupported_media_type(content_type: str) -> ApiError:
    message = f"the body of the request was in an unknown format ({content_type}) - accepted media types include: " + (
        "application/json-patch+json, application/merge-patch+json, "
        "application/apply-patch+yaml, application/strategic-merge-patch+json"
    )
    return ApiError(415, "UnsupportedMediaType", message, {})


def from_code(code: int, message: str) -> ApiError:
    """A failure for an arbitrary HTTP status, as injected by tests."""
    return ApiError(code, REASONS.get(code, "Unknown"), message, {})
