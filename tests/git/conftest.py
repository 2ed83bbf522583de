from tests.git.history import history

__all__ = ["history"]
