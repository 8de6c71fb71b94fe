"""What the purge_expired and prune_versions commands share: options, progress, summary.

They run persistence.cleanup directly, without a broker, for cron users; runs are recorded
with trigger "command" and take the same per-store lock as the workers.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from persistence import cleanup, conf


class CleanupCommand(BaseCommand):
    task: cleanup.TaskName

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--store",
            action="append",
            dest="stores",
            metavar="NAME",
            help="a store named in STATEHUB_STORES (repeatable; default: every store)",
        )
        parser.add_argument(
            "--limit",
            type=int,
            metavar="N",
            help="states per batch (default: STATEHUB_CLEANUP_BATCH_SIZE)",
        )
        parser.add_argument(
            "--time-limit",
            type=float,
            metavar="SECONDS",
            help="stop between batches after this long, 0 for no limit "
            "(default: STATEHUB_CLEANUP_TIME_LIMIT)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = options["stores"] or conf.store_names()
        unknown = sorted(set(names) - set(conf.store_names()))
        if unknown:
            raise CommandError(
                f"no store named {', '.join(unknown)}; configured: {', '.join(conf.store_names())}"
            )
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        if options["time_limit"] is not None and options["time_limit"] < 0:
            raise CommandError("--time-limit must be 0 (no limit) or more")
        if options.get("max_versions") is not None and options["max_versions"] < 1:
            raise CommandError("--max-versions must be at least 1")
        progress = options["verbosity"] >= 2 or self.stdout.isatty()
        failed = []
        for name in names:
            result = cleanup.run_cleanup(
                name,
                self.task,
                trigger="command",
                batch_size=options["limit"],
                time_limit=options["time_limit"],
                max_versions=options.get("max_versions"),
                on_batch=self._show_progress if progress else None,
            )
            self._summarize(result, options["verbosity"])
            if result.outcome == "error":
                failed.append(name)
        if failed:
            raise CommandError(f"{self.task} failed on {', '.join(failed)}")

    def _show_progress(self, p: cleanup.Progress) -> None:
        self.stdout.write(
            f"  {p.store}: batch {p.batches}, {p.last_batch} removed ({p.removed} so far)"
        )

    def _summarize(self, r: cleanup.RunResult, verbosity: int) -> None:
        what = "expired states" if r.task == "purge_expired" else "old versions"
        if r.outcome == "ok":
            if verbosity >= 1:
                batches = f"{r.batches} batch" + "es" * (r.batches != 1)
                rest = " (time limit reached; the rest waits for the next run)" * r.more_left
                self.stdout.write(
                    self.style.SUCCESS(f"{r.store}: removed {r.removed} {what} in {batches}{rest}")
                )
        elif r.outcome == "busy":
            self.stdout.write(self.style.WARNING(f"{r.store}: skipped, {r.error}"))
        else:
            self.stderr.write(f"{r.store}: {r.error} (after removing {r.removed} {what})")
