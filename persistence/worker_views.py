"""The Workers page: cleanup runs, schedule and Run now."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def workers(request: HttpRequest) -> HttpResponse:
    return render(request, "persistence/workers.html", {})
