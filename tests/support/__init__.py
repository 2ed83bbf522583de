"""Test support: real Envoy and etcd processes, loopback HTTP backends and Git repositories."""
