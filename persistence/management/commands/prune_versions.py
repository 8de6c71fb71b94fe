"""``manage.py prune_versions``: drop versions past max_versions now, without a broker."""

from __future__ import annotations

from django.core.management.base import CommandParser

from persistence.management.commands._cleanup import CleanupCommand


class Command(CleanupCommand):
    help = (
        "Drop old versions past each store's max_versions (or --max-versions) from every "
        "configured store (or --store), in batches."
    )
    task = "prune_versions"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--max-versions",
            type=int,
            metavar="N",
            help="versions each state keeps (default: the store's configured max_versions)",
        )
