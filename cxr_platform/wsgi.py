import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxr_platform.settings")
application = get_wsgi_application()

# Import every view module now, in the master when gunicorn preloads and otherwise in each worker as
# it starts, rather than inside some user's first request (about a second: the API, DRF, the
# screening and export code).
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns
