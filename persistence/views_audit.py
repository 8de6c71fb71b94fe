"""The audit log page (viewer and up, read-only): filters, keyset paging, streaming CSV export."""

from __future__ import annotations

import csv
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from persistence import selectors
from persistence.forms import AuditFilterForm
from persistence.roles import require_role
from persistence.views import page


class _Echo:
    """A file-like object whose write returns the line, for csv.writer over a stream."""

    def write(self, value: str) -> str:
        return value


def _query(form: AuditFilterForm) -> tuple[selectors.AuditFilter, int | None]:
    form.is_valid()
    data: dict[str, Any] = getattr(form, "cleaned_data", {})
    query = selectors.AuditFilter(
        user=(data.get("user") or "").strip(),
        action=data.get("action") or "",
        outcome=data.get("outcome") or "",
        store=(data.get("store") or "").strip(),
        state_id=data.get("state") or "",
        since=data.get("since"),
        until=data.get("until"),
    )
    return query, data.get("cursor")


@require_GET
@require_role("viewer")
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    query, cursor = _query(form)
    params = request.GET.copy()
    params.pop("cursor", None)
    context = {
        "form": form,
        "page": selectors.audit_page(query, cursor),
        "filters": params.urlencode(),
    }
    return page(request, "persistence/audit.html", context, partials=("rows",))


@require_GET
@require_role("viewer")
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    query, _ = _query(AuditFilterForm(request.GET))
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in selectors.audit_csv_rows(query)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = 'attachment; filename="statehub-audit.csv"'
    return response
