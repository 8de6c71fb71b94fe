"""Production settings: the base settings, hardened; refuses to start when left insecure.

Use with ``DJANGO_SETTINGS_MODULE=statehub.settings_production``. Needs DJANGO_SECRET_KEY (not
the development default) and DJANGO_ALLOWED_HOSTS; serve it over HTTPS behind a proxy that sets
X-Forwarded-Proto (docs/security.md lists every variable).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from statehub.env import env_bool, env_int
from statehub.settings import *  # noqa: F403
from statehub.settings import DEFAULT_SECRET_KEY, SECRET_KEY

DEBUG = env_bool("DJANGO_DEBUG", False)
if DEBUG:
    raise ImproperlyConfigured("statehub.settings_production refuses to run with DJANGO_DEBUG on")
if SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured(
        "statehub.settings_production needs DJANGO_SECRET_KEY: 50 or more random characters, "
        "not the development default"
    )

# HTTPS only: redirect, HSTS, cookies never sent in clear text.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# Joining the browsers' HSTS preload list binds the whole domain (and its subdomains) to HTTPS
# for months; that is the domain owner's decision, so it is opt-in and its warning silenced.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # htmx reads the token from the page (hx-headers), not the cookie
SESSION_COOKIE_NAME = "__Host-sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken"

# Shorter idle expiry than development: one hour without a request ends the session.
SESSION_COOKIE_AGE = env_int("STATEHUB_SESSION_IDLE_SECONDS", 3600)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("STATEHUB_SESSION_EXPIRE_AT_BROWSER_CLOSE", True)
