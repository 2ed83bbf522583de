"""A stateful test double of the Kubernetes API server, and the pytest fixture that starts it."""

from tests.k8sapi.fixtures import KubeAPIHandle, kube_api
from tests.k8sapi.server import FakeKubeAPI, RequestRecord

__all__ = ["FakeKubeAPI", "KubeAPIHandle", "RequestRecord", "kube_api"]
