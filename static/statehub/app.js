// statehub dashboard behaviour: theme toggle, keyboard shortcuts, messages for failed HTMX
// requests, copy / expand / collapse of the JSON viewer. No inline scripts anywhere (CSP).
(function () {
  "use strict";

  // ---------------------------------------------------------------- messages
  function toast(text, level) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "msg msg-" + (level || "error");
    el.setAttribute("role", level === "error" ? "alert" : "status");
    el.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "msg-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    el.appendChild(close);
    box.appendChild(el);
    if (level !== "error") setTimeout(function () { el.remove(); }, 5000);
  }

  // 404, 500 and 503 pages are swapped in as well (see htmx-config in base.html): they explain
  // themselves; every error also raises a message here so nothing fails silently. A swapped
  // error is announced before the swap: htmx:responseError comes after it, on the element
  // that asked, which the swap may have removed from the page (then no listener hears it).
  function announce(xhr) {
    if (xhr.statehubAnnounced) return;
    xhr.statehubAnnounced = true;
    var text = xhr.getResponseHeader("X-Statehub-Message");
    if (!text) text = "Request failed: " + xhr.status + " " + (xhr.statusText || "");
    toast(text, "error");
  }
  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (evt.detail.isError && evt.detail.shouldSwap) announce(evt.detail.xhr);
  });
  document.addEventListener("htmx:responseError", function (evt) { announce(evt.detail.xhr); });
  document.addEventListener("htmx:sendError", function () {
    toast("The server could not be reached. Check your connection and try again.", "error");
  });
  document.addEventListener("click", function (evt) {
    var btn = evt.target.closest("[data-dismiss]");
    if (btn) btn.closest(".msg").remove();
  });
  // An error stays until dismissed, or until the next page loads fine: then it is stale (the
  // store is back) and would only mislead. Polls and other partial updates leave it be.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var target = evt.detail.target;
    if (!evt.detail.successful || !target || target.id !== "main") return;
    document.querySelectorAll("#toasts .msg-error").forEach(function (el) { el.remove(); });
  });

  // ---------------------------------------------------------------- theme
  function currentTheme() {
    var set = document.documentElement.dataset.theme;
    if (set) return set;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  document.addEventListener("click", function (evt) {
    if (!evt.target.closest("[data-theme-toggle]")) return;
    var next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("statehub-theme", next); } catch (e) { /* ignore */ }
  });

  // ---------------------------------------------------------------- nav highlight
  function markNav() {
    var path = location.pathname;
    document.querySelectorAll("[data-nav]").forEach(function (a) {
      var href = a.getAttribute("href");
      var here = href === path || (href.length > 1 && path.indexOf(href) === 0 && !/\/s\/[^/]+\/$/.test(href));
      if (/\/s\/[^/]+\/$/.test(href)) here = path === href || /\/(state|diff|rollback|delete|delete-version|checkpoints?)\//.test(path);
      if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
  }
  document.addEventListener("DOMContentLoaded", markNav);
  document.addEventListener("htmx:pushedIntoHistory", markNav);
  window.addEventListener("popstate", function () { setTimeout(markNav, 0); });

  // ---------------------------------------------------------------- JSON viewer
  document.addEventListener("click", function (evt) {
    var expand = evt.target.closest("[data-tree-expand]");
    var collapse = evt.target.closest("[data-tree-collapse]");
    if (expand || collapse) {
      var card = (expand || collapse).closest(".card") || document;
      card.querySelectorAll("[data-jtree] details").forEach(function (d) { d.open = !!expand; });
      return;
    }
    var copy = evt.target.closest("[data-copy-url]");
    if (copy) copyJson(copy);
  });

  function copyJson(button) {
    var url = button.getAttribute("data-copy-url");
    var label = button.textContent;
    var done = function () {
      button.textContent = "Copied ✓";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    var fail = function (err) { toast("Copy failed: " + (err && err.message || err), "error"); };
    var text = fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      return r.text();
    });
    if (window.ClipboardItem && navigator.clipboard && navigator.clipboard.write) {
      var item = new ClipboardItem({ "text/plain": text.then(function (t) { return new Blob([t], { type: "text/plain" }); }) });
      navigator.clipboard.write([item]).then(done, function () {
        text.then(function (t) { return navigator.clipboard.writeText(t); }).then(done, fail);
      });
    } else if (navigator.clipboard) {
      text.then(function (t) { return navigator.clipboard.writeText(t); }).then(done, fail);
    } else {
      fail("clipboard not available (needs HTTPS or localhost)");
    }
  }

  // ---------------------------------------------------------------- keyboard
  var active = -1;
  function rows() {
    var table = document.querySelector("#main [data-rows]");
    return table ? Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-row]")) : [];
  }
  function highlight(index) {
    var all = rows();
    if (!all.length) return;
    active = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (r, i) { r.classList.toggle("kbd-active", i === active); });
    all[active].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("htmx:afterSwap", function () { active = -1; });

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  // A page swapped into #main starts keyboard and screen-reader users at its heading, as a
  // full page load would start them at the top; otherwise focus stays on the link that was
  // removed, which puts it back at the start of the document. Typing in a field keeps focus.
  document.addEventListener("htmx:afterSettle", function (evt) {
    if (evt.detail.target.id !== "main") return;
    var here = document.activeElement;
    if (typing(here) && document.body.contains(here)) return;
    var spot = document.querySelector("#main h1") || document.getElementById("main");
    spot.setAttribute("tabindex", "-1");
    spot.focus({ preventScroll: true });
  });

  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey) return;
    var dialog = document.getElementById("shortcuts");
    if (evt.key === "Escape" && typing(document.activeElement)) {
      // A search field clears itself on Esc (and fires htmx's "search" trigger): leave it as typed.
      evt.preventDefault();
      document.activeElement.blur();
      return;
    }
    if (typing(evt.target)) return;
    if (evt.key === "/") {
      var search = document.querySelector("[data-search]");
      if (search) { evt.preventDefault(); search.focus(); search.select(); }
    } else if (evt.key === "?") {
      evt.preventDefault();
      if (dialog && !dialog.open) dialog.showModal();
    } else if (evt.key === "j") {
      highlight(active + 1);
    } else if (evt.key === "k") {
      highlight(active < 0 ? 0 : active - 1);
    } else if (evt.key === "Enter" && active >= 0) {
      var row = rows()[active];
      var link = row && (row.querySelector("[data-row-link]") || row.querySelector("a"));
      if (link) { evt.preventDefault(); link.click(); }
    }
  });
  document.addEventListener("click", function (evt) {
    if (evt.target.closest("[data-shortcuts]")) {
      var dialog = document.getElementById("shortcuts");
      if (dialog && !dialog.open) dialog.showModal();
    }
  });
})();
