"""The HTTP service (`consentry serve`): unsubscribe links, the preference centre, Twilio
webhooks, the JSON API with role-based API keys, /metrics and /healthz (docs/api.md)."""

from engine.api.app import build_app
from engine.api.auth import Caller, Permission, Role, hash_key
from engine.api.keys import ApiKeyRecord, create_api_key, list_api_keys, revoke_api_key
from engine.api.keywords import Keyword, classify
from engine.api.server import serve_until_stopped

__all__ = [
    "ApiKeyRecord",
    "Caller",
    "Keyword",
    "Permission",
    "Role",
    "build_app",
    "classify",
    "create_api_key",
    "hash_key",
    "list_api_keys",
    "revoke_api_key",
    "serve_until_stopped",
]
