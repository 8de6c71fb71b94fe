"""The statehub Django project; importing it loads the Celery app so tasks bind to it."""

from statehub.celery import app as celery_app

__all__ = ["celery_app"]
