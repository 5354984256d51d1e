"""Superset configuration of the SPM warehouse (loaded via SUPERSET_CONFIG_PATH).

Why this file reads no environment variables: Superset reads the three that
matter itself - SUPERSET_HOME (metadata folder: SQLite `superset.db` lives
there), SUPERSET_SECRET_KEY and SUPERSET_CONFIG_PATH - and the project's
launcher (`python -m dashboards`) sets them from the project
settings. Everything here is a fixed policy decision.

This file runs inside Superset's own virtual environment: standard library
only, no import of the project package.
"""

# Managers act on dashboards; SQL Lab and uploads stay with admins.
FEATURE_FLAGS = {
    "DASHBOARD_RBAC": False,  # dashboard visibility follows dataset access
    "ALERT_REPORTS": False,  # no Celery worker in this deployment
    "THUMBNAILS": False,
    # On for one use: "last month of the selected Period" filters read {{ to_dttm }} (the end of the
    # dashboard's time range). Only admins have SQL Lab; Superset's Jinja runs sandboxed and RLS still applies.
    "ENABLE_TEMPLATE_PROCESSING": True,
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


# The login page's event logger sends POST /superset/log/ as the page unloads,
# with the anonymous session cookie. Superset answers that with a redirect to
# the login page and a flash message, i.e. a new anonymous session cookie. When
# that answer arrives after the login form's answer, the browser replaces the
# fresh login cookie with it and the user lands on the login page again
# (measured: about 1 login in 30; apache/superset#25895 shows the same log).
# Anonymous events are discarded anyway, so answer them before Flask opens the
# session: 204, no cookie.
LOG_BEACON_PATH = "/superset/log/"


def FLASK_APP_MUTATOR(app):  # noqa: N802 (Superset's name)
    """Answer anonymous event-log beacons with 204 and no Set-Cookie."""
    from itsdangerous import BadSignature
    from werkzeug.http import parse_cookie

    inner = app.wsgi_app
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    serializer = app.session_interface.get_signing_serializer(app)  # once: the secret key is set by now

    def logged_in(environ) -> bool:
        value = parse_cookie(environ.get("HTTP_COOKIE", "")).get(cookie_name)
        if not value or serializer is None:
            return False
        try:
            return "_user_id" in serializer.loads(value)
        except BadSignature:
            return False

    def wsgi_app(environ, start_response):
        if (environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == LOG_BEACON_PATH
                and not logged_in(environ)):
            start_response("204 No Content", [("Content-Length", "0")])
            return [b""]
        return inner(environ, start_response)

    app.wsgi_app = wsgi_app
