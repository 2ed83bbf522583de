"""Resolve stage: validated spec -> the immutable, target-agnostic intermediate model (IR)."""

from meshc.resolve.resolver import resolve

__all__ = ["resolve"]
