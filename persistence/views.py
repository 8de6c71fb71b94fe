"""Dashboard views: thin; writes go through services (which check the role again and audit),
reads through selectors where there is more to them than one store call.

Every page is a full page that also answers HTMX requests with a partial of the same template
(``"page.html#content"`` for navigation into ``#main``, or a smaller named partial such as
``#rows`` when that is the request's target). A store that cannot be reached renders a banner
(503), never a 500.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial, wraps
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from persistence import audit, conf, selectors, services
from persistence import validation as check
from persistence.errors import (
    BackendUnavailableError,
    PersistenceError,
    StateIntegrityError,
    StateNotFoundError,
    VersionPrunedError,
)
from persistence.forms import DeleteVersionForm, ReasonForm, RollbackForm, StateFilterForm
from persistence.roles import require_role
from persistence.store import StatePersistence
from persistence.types import StateMetadata


@dataclass(frozen=True)
class Hub:
    """The store a request is about, and the name it has in the URL."""

    name: str
    store: StatePersistence


# ------------------------------------------------------------------ helpers


def page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    partials: Sequence[str] = (),
    status: int = 200,
) -> HttpResponse:
    """Render ``template``, or for HTMX its partial named after the target (else ``content``)."""
    name = template
    htmx = getattr(request, "htmx", None)
    if htmx and not htmx.history_restore_request:
        target = htmx.target or ""
        name = f"{template}#{target if target in partials else 'content'}"
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def not_found(
    request: HttpRequest, hub: Hub | None, what: str, *, gone: bool = False
) -> HttpResponse:
    """The 404 page. ``gone``: what a change acts on is not there (as opposed to input that
    names nothing), so a POST answered with it is audited as an error."""
    response = page(request, "persistence/not_found.html", {"hub": hub, "what": what}, status=404)
    response["X-Statehub-Message"] = "Not found"
    return audit.mark_unserved(response, what) if gone else response


def store_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Open the store named in the URL; an unknown name is a 404, a store that is down a 503."""

    @wraps(view)
    def wrapper(request: HttpRequest, store: str, *args: Any, **kwargs: Any) -> HttpResponse:
        if store not in conf.store_names():
            return not_found(request, None, f"No store named “{store}” is configured.", gone=True)
        try:
            try:
                hub = Hub(store, conf.get_store(store))
            except (ImportError, ValueError, TypeError) as exc:
                # A missing driver or a bad URL in settings: this store cannot open at all.
                return _store_down(request, store, f"cannot open the store: {exc}")
            if "state_id" in kwargs:
                try:  # an id no store accepts (a control character, too long) names no state
                    check.state_id(kwargs["state_id"])
                except ValueError as exc:
                    return not_found(request, hub, f"No such state: {exc}.")
            try:
                return view(request, hub, *args, **kwargs)
            except Http404 as exc:  # from _version: a number that cannot be a version
                return not_found(request, hub, str(exc))
        except (BackendUnavailableError, ConnectionError, TimeoutError) as exc:
            return _store_down(request, store, str(exc) or type(exc).__name__)
        except PersistenceError as exc:  # what no view expects: a damaged SQLite file, say
            return _store_down(request, store, str(exc), unavailable=False)

    return wrapper


def _store_down(
    request: HttpRequest, name: str, error: str, *, unavailable: bool = True
) -> HttpResponse:
    context = {"hub_name": name, "error": error, "unavailable": unavailable}
    status = 503 if unavailable else 500
    response = page(request, "persistence/store_down.html", context, status=status)
    what = "is unavailable" if unavailable else "failed"
    response["X-Statehub-Message"] = f"Store '{name}' {what}"
    return audit.mark_unserved(response, f"store {name!r} {what}: {error}")


def _version(value: str | None) -> int | None:
    """A version number from the request: None when not given (the latest); Http404 when it
    cannot be a version, rather than quietly showing the latest one."""
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= check.MAX_STORED_VERSION:
        raise Http404(f"“{value[:40]}” is not a version number.")
    return number


def _page_number(value: str | None) -> int:
    """A timeline page number; anything else is the first page."""
    try:
        number = int(value or "")
    except ValueError:
        return 1
    return max(number, 1)


def _done(request: HttpRequest, url: str) -> HttpResponse:
    """After a successful POST: a normal redirect, or a full-page one for HTMX."""
    return HttpResponseClientRedirect(url) if getattr(request, "htmx", False) else redirect(url)


def _state_url(hub: Hub, state_id: str) -> str:
    return reverse("persistence:state", args=[hub.name, state_id])


# ------------------------------------------------------------------ pages


@require_GET
@require_role("viewer")
def home(request: HttpRequest) -> HttpResponse:
    return redirect("persistence:states", conf.default_store_name())


@require_GET
@require_role("viewer")
@store_view
def states(request: HttpRequest, hub: Hub) -> HttpResponse:
    form = StateFilterForm(request.GET)
    result, query, problem = selectors.listable_page(hub.store, form.query())
    if problem:
        messages.error(request, f"Bad filter: {problem}")
    context = {
        "hub": hub,
        "page": result,
        "query": query,
        "form": form,
        "tag_choices": partial(selectors.tag_choices, hub.name, hub.store),
        "now": selectors.store_now(hub.store),
    }
    return page(request, "persistence/states.html", context, partials=("rows",))


@require_GET
@require_role("viewer")
@store_view
def state(request: HttpRequest, hub: Hub, state_id: str) -> HttpResponse:
    view = selectors.state_view(hub.store, state_id, _version(request.GET.get("v")))
    if view is None:
        return not_found(
            request, hub, f"State “{state_id}” does not exist, has expired, or has no such version."
        )
    timeline = selectors.timeline(view.versions, _page_number(request.GET.get("page")))
    shown = [item.meta for item in timeline.items]
    context: dict[str, Any] = {
        "hub": hub,
        "view": view,
        "state_id": state_id,
        "timeline": timeline,
        "rolled_back_by": selectors.rollback_actors(hub.name, state_id, shown),
        "audit_trail": selectors.audit_trail(hub.name, state_id),
        "now": selectors.store_now(hub.store),
    }
    if view.data is not None and view.tree_too_large:
        context["pretty"], context["pretty_cut"] = selectors.pretty_text(view.data)
    return page(request, "persistence/state.html", context, partials=("timeline",))


@require_GET
@require_role("viewer")
@store_view
def state_download(request: HttpRequest, hub: Hub, state_id: str) -> HttpResponse:
    try:
        found = selectors.state_json(hub.store, state_id, _version(request.GET.get("v")))
    except StateIntegrityError as exc:
        return HttpResponse(f"Corrupt version: {exc}", status=409, content_type="text/plain")
    except VersionPrunedError as exc:
        return HttpResponse(str(exc), status=404, content_type="text/plain")
    if found is None:
        return HttpResponse("No such state or version.", status=404, content_type="text/plain")
    body, meta = found
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", state_id)[:100] or "state"
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{safe_name}.v{meta.version}.json"'
    return response


@require_GET
@require_role("viewer")
@store_view
def diff(request: HttpRequest, hub: Hub, state_id: str) -> HttpResponse:
    versions = hub.store.list_versions(state_id)
    if not versions:
        return not_found(request, hub, f"State “{state_id}” does not exist or has expired.")
    old_default, new_default = selectors.default_pair(versions)
    old = _version(request.GET.get("a")) or old_default
    new = _version(request.GET.get("b")) or new_default
    kept = {v.version for v in versions}
    missing = [str(v) for v in dict.fromkeys((old, new)) if v not in kept]
    if missing:
        return not_found(
            request,
            hub,
            f"State “{state_id}” has no version {' or '.join(missing)} (any more): versions "
            f"{versions[0].version} to {versions[-1].version} are kept.",
        )
    context: dict[str, Any] = {
        "hub": hub,
        "state_id": state_id,
        "choices": selectors.version_choices(versions, (old, new)),
        "a": old,
        "b": new,
        "latest": versions[-1],
    }
    try:
        context["diff"] = selectors.version_diff(hub.store, versions, old, new)
    except StateIntegrityError as exc:
        context["corrupt"] = str(exc)
    if context.get("diff") is None and "corrupt" not in context:  # gone since it was listed
        return not_found(request, hub, f"Version {old} or {new} of “{state_id}” is just gone.")
    return page(request, "persistence/diff.html", context)


@require_http_methods(["GET", "POST"])
@require_role("operator", action="rollback")
@store_view
def rollback(request: HttpRequest, hub: Hub, state_id: str) -> HttpResponse:
    versions = hub.store.list_versions(state_id)
    if not versions:
        return not_found(
            request, hub, f"State “{state_id}” does not exist or has expired.", gone=True
        )
    data = request.POST if request.method == "POST" else None
    form = RollbackForm(data, initial={"version": request.GET.get("to")})
    # A state saved since the page was shown falls through to be confirmed again, below.
    if form.is_valid() and not _moved_on(request, state_id, versions, form.cleaned_data):
        target = form.cleaned_data["version"]
        try:
            meta = services.rollback_state(
                hub.store,
                request.user,
                state_id,
                target,
                form.cleaned_data["reason"],
                store_name=hub.name,
                write_id=form.cleaned_data["write_id"] or None,
            )
        except (StateNotFoundError, VersionPrunedError, StateIntegrityError) as exc:
            messages.error(request, f"Rollback failed: {exc}")
            if not isinstance(exc, StateIntegrityError):  # gone: the state's page shows what is
                return _done(request, _state_url(hub, state_id))
        else:
            if meta.version <= versions[-1].version:  # this form's write_id was used before
                messages.info(
                    request,
                    f"This rollback to version {target} was already done, as version "
                    f"{meta.version}; nothing was written now. The state may have changed since.",
                )
            else:
                messages.success(
                    request,
                    f"Rolled back to version {target}: new version {meta.version} written.",
                )
            return _done(request, _state_url(hub, state_id))
    target = _version(request.POST.get("version") or request.GET.get("to"))
    if target is None:
        return not_found(
            request,
            hub,
            f"Say which version of “{state_id}” to roll back to (?to=N): pick it in the "
            f"state's version timeline.",
        )
    if target not in {v.version for v in versions}:
        return not_found(
            request, hub, f"State “{state_id}” has no version {target} to roll back to."
        )
    context: dict[str, Any] = {
        "hub": hub,
        "state_id": state_id,
        "form": form,
        "target": target,
        "warned": request.method == "POST" and form.is_valid(),  # shown again after _moved_on
        "latest": versions[-1],
        "write_id": request.POST.get("write_id") or uuid.uuid4().hex,
    }
    # The target is read on its own (the diff may be cached, or fail on a corrupt latest
    # version, which is exactly when rolling back matters): only a corrupt target hides the button.
    try:
        hub.store.load_with_metadata(state_id, target)
    except StateIntegrityError as exc:
        context["target_corrupt"] = str(exc)
    try:
        context["diff"] = selectors.version_diff(hub.store, versions, versions[-1].version, target)
    except StateIntegrityError as exc:
        context["corrupt"] = str(exc)
    return page(request, "persistence/rollback.html", context)


def _moved_on(
    request: HttpRequest, state_id: str, versions: list[StateMetadata], data: dict[str, Any]
) -> bool:
    """Whether the state was saved after the confirmation was shown (and not by this very
    form, sent again): say so, so the operator reviews what a rollback now replaces."""
    seen, latest, write_id = data["seen"], versions[-1].version, data["write_id"]
    if seen is None or seen == latest or data["warned"]:  # warned once: a busy state must
        return False  # not keep an operator from ever getting through
    if any(v.write_id == write_id for v in versions):  # this form, sent again: the store
        return False  # answers with the version it wrote
    if data["version"] not in {v.version for v in versions}:  # pruned or deleted: the
        return False  # service refuses it, audited, and the state's page says why
    messages.warning(
        request,
        f"“{state_id}” changed while you looked: v{latest} is now its latest version, not "
        f"v{seen}. Nothing was rolled back; check what would change below and confirm again.",
    )
    return True


@require_http_methods(["GET", "POST"])
@require_role("operator", action="delete_version")
@store_view
def delete_version(request: HttpRequest, hub: Hub, state_id: str) -> HttpResponse:
    versions = hub.store.list_versions(state_id)
    number = _version(request.POST.get("version") or request.GET.get("v"))
    meta = next((v for v in versions if v.version == number), None)
    if meta is None:
        return not_found(
            request,
            hub,
            f"State “{state_id}” has no version {number or '?'} (now): it may have just been "
            "deleted or pruned, from another page or by a worker.",
            gone=number is not None,
        )
    form = DeleteVersionForm(
        request.POST if request.method == "POST" else None, initial={"version": number}
    )
    if form.is_valid():
        existed = services.delete_version(
            hub.store,
            request.user,
            state_id,
            meta.version,
            form.cleaned_data["reason"],
            store_name=hub.name,
        )
        if not existed:  # gone between the listing above and the delete
            messages.info(request, f"Version {meta.version} was already gone: nothing deleted.")
            return _done(request, _state_url(hub, state_id))
        if len(versions) == 1:
            messages.success(
                request,
                f"Deleted version {meta.version}, the last one: state “{state_id}” is gone.",
            )
            return _done(request, reverse("persistence:states", args=[hub.name]))
        messages.success(request, f"Deleted version {meta.version}.")
        return _done(request, _state_url(hub, state_id))
    context = {
        "hub": hub,
        "state_id": state_id,
        "meta": meta,
        "form": form,
        "last_one": len(versions) == 1,
    }
    return page(request, "persistence/delete_version.html", context)


@require_http_methods(["GET", "POST"])
@require_role("operator", action="delete_state")
@store_view
def delete_state(request: HttpRequest, hub: Hub, state_id: str) -> HttpResponse:
    versions = hub.store.list_versions(state_id)
    if not versions:
        return not_found(
            request, hub, f"State “{state_id}” does not exist or has expired.", gone=True
        )
    form = ReasonForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        services.delete_state(
            hub.store, request.user, state_id, form.cleaned_data["reason"], store_name=hub.name
        )
        messages.success(request, f"Deleted state “{state_id}” and its {len(versions)} version(s).")
        return _done(request, reverse("persistence:states", args=[hub.name]))
    context = {"hub": hub, "state_id": state_id, "form": form, "versions": versions}
    return page(request, "persistence/delete_state.html", context)


@require_GET
@require_role("viewer")
@store_view
def tags(request: HttpRequest, hub: Hub) -> HttpResponse:
    bars, more = selectors.most_used_tags(hub.store)
    return page(request, "persistence/tags.html", {"hub": hub, "tags": bars, "more": more})


@require_GET
@require_role("viewer")
@store_view
def checkpoints(request: HttpRequest, hub: Hub, state_id: str) -> HttpResponse:
    context: dict[str, Any] = {"hub": hub, "state_id": state_id}
    try:
        found = selectors.checkpoints(hub.store, state_id)
    except StateIntegrityError as exc:
        found, context["corrupt"] = [], str(exc)
    # Each checkpoint's tree is inline in the list; a big one is only linked to.
    context["checkpoints"] = []
    for cp in found:
        size = selectors.json_size(cp["checkpoint_data"])
        as_link = selectors.too_large_for_tree(size)
        context["checkpoints"].append({**cp, "size_json": size, "as_link": as_link})
    return page(request, "persistence/checkpoints.html", context)


@require_GET
@require_role("viewer")
@store_view
def checkpoint(request: HttpRequest, hub: Hub, checkpoint_id: str) -> HttpResponse:
    try:
        found = selectors.checkpoint(hub.store, checkpoint_id)
    except StateIntegrityError as exc:
        messages.error(request, f"Checkpoint {checkpoint_id} is corrupt: {exc}")
        return not_found(request, hub, "The checkpoint's data failed its checksum.")
    except ValueError:
        found = None
    if found is None:
        return not_found(request, hub, f"No checkpoint “{checkpoint_id}”.")
    context: dict[str, Any] = {"hub": hub, "cp": found}
    context["size_json"] = selectors.json_size(found["checkpoint_data"])
    if selectors.too_large_for_tree(context["size_json"]):  # as the state page: capped text
        context["pretty"], context["pretty_cut"] = selectors.pretty_text(found["checkpoint_data"])
    return page(request, "persistence/checkpoint.html", context)


@require_GET
@require_role("viewer")
@store_view
def stats(request: HttpRequest, hub: Hub) -> HttpResponse:
    data = hub.store.get_stats()
    context = {
        "hub": hub,
        "stats": data,
        "operations": data.get("operations", {}),
        "server_info": selectors.server_info(data),
        "sample": selectors.sample_states(hub.store),
        "tag_bars": selectors.tag_bars(hub.store),
    }
    return page(request, "persistence/stats.html", context)
