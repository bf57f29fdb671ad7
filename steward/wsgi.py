"""Steward's WSGI application (gunicorn ``steward.wsgi``: ``make run``, production).

Once Django is loaded, its long-lived objects (settings, apps, URLconf, templates) are frozen out of
the garbage collector, and young objects are collected after 50,000 allocations, not 700: a batch of
1,000 decision records makes some 30,000 short-lived objects, which the default thresholds answer
with dozens of collections, each re-scanning everything the process holds. Measured with
``bench/ingest.py``: about a seventh less CPU per record.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "steward.settings")
application = get_wsgi_application()

gc.freeze()
gc.set_threshold(50_000, 20, 10)
