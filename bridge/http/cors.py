"""Which other origins' pages may subscribe (CORS), checked at start-up."""

from __future__ import annotations

import re
from typing import Any

from bridge.config import ConfigError, Settings

_ORIGIN = re.compile(r"https?://[^/?#\s*]+")
# What an EventSource (or a fetch of /topics) may send besides the safelisted headers.
ALLOWED_HEADERS = ("Authorization", "Last-Event-ID")
PREFLIGHT_MAX_AGE = 600


def cors_options(settings: Settings) -> dict[str, Any] | None:
    """Keyword arguments of Starlette's CORSMiddleware, or None when no origin is allowed."""
    origins = settings.cors_origins
    if not origins:
        return None
    if "*" in origins:
        if settings.cors_credentials:
            raise ConfigError("--cors-origins: '*' cannot go with credentials; list the origins, or set "
                              "--cors-credentials false")  # fmt: skip
        if len(origins) > 1:
            raise ConfigError("--cors-origins: '*' already allows every origin; give it alone")
    else:
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(f"--cors-origins: {origin!r} is not an origin (scheme://host[:port], no path)")
    return {
        "allow_origins": origins,
        "allow_credentials": settings.cors_credentials,
        "allow_methods": ["GET"],
        "allow_headers": list(ALLOWED_HEADERS),
        "max_age": PREFLIGHT_MAX_AGE,
    }
