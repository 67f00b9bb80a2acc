"""The engine raises the same hierarchy as campaigns/ (defined there: engine depends on it)."""

from campaigns.errors import ConflictError, ConsentryError, InputError, InputErrors, NotFoundError

__all__ = ["ConflictError", "ConsentryError", "InputError", "InputErrors", "NotFoundError"]
