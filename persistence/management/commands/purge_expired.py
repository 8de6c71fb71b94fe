"""``manage.py purge_expired``: remove expired states now, without a broker (for cron)."""

from __future__ import annotations

from persistence.management.commands._cleanup import CleanupCommand


class Command(CleanupCommand):
    help = "Remove expired states from every configured store (or --store), in batches."
    task = "purge_expired"
