"""Validate stage: structure (pydantic models) then meaning (semantic checks), all collected."""
