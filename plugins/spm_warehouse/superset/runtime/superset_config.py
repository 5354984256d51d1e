"""Superset configuration of the SPM warehouse (loaded via SUPERSET_CONFIG_PATH).

Why this file reads no environment variables: Superset reads the three that
matter itself - SUPERSET_HOME (metadata folder: SQLite `superset.db` lives
there), SUPERSET_SECRET_KEY and SUPERSET_CONFIG_PATH - and the project's
launcher (`python -m spm_warehouse.superset`) sets them from the project
settings. Everything here is a fixed policy decision.

This file runs inside Superset's own virtual environment: standard library
only, no import of the project package.
"""

# Managers act on dashboards; SQL Lab and uploads stay with admins.
FEATURE_FLAGS = {
    "DASHBOARD_RBAC": False,  # dashboard visibility follows dataset access
    "ALERT_REPORTS": False,  # no Celery worker in this deployment
    "THUMBNAILS": False,
    "ENABLE_TEMPLATE_PROCESSING": False,
    "EMBEDDED_SUPERSET": False,
}

# CSRF protection stays on (the login form and every POST carry the token).
WTF_CSRF_ENABLED = True

# Login throttling in every environment, not only "production".
RATELIMIT_ENABLED = True
AUTH_RATE_LIMITED = True
AUTH_RATE_LIMIT = "10 per minute"
RATELIMIT_STORAGE_URI = "memory://"

# The warehouse connection is PostgreSQL; refuse SQLite and other local files.
PREVENT_UNSAFE_DB_CONNECTIONS = True

# Cookies: HTTP-only, same-site; set SESSION_COOKIE_SECURE behind TLS.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# No anonymous access; new users get no role until an admin assigns one.
PUBLIC_ROLE_LIKE = None
AUTH_USER_REGISTRATION = False

# KPI marts are small; keep result sets bounded anyway.
ROW_LIMIT = 10000
SQL_MAX_ROW = 100000
SUPERSET_WEBSERVER_TIMEOUT = 120

# Cache chart results briefly in memory of each worker; the marts change nightly.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 600}
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 600}

# Content security policy: everything from this server only. This also blocks
# the upstream usage pixel (scarf.sh) and map tiles, which these dashboards
# do not use: a warehouse of client data should not call out.
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
