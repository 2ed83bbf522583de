"""meshc: a declarative GitOps configuration compiler for an Envoy-based service mesh."""

__version__ = "0.1.0"
