"""Sync side: plan (desired bundle vs live state) -> apply -> prune, per target.

Sync sees only a Bundle (meshc.bundle); it never imports emitters or the validator. The CLI hands
it a compile function when it must turn commits into bundles (watch).
"""
