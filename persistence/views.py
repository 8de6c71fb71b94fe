"""Dashboard views: thin; reads go through selectors, writes through services."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def states(request: HttpRequest) -> HttpResponse:
    return render(request, "persistence/states.html", {})
