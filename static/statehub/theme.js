// Applies the saved light/dark choice before the first paint (loaded without defer, in <head>).
(function () {
  try {
    var theme = localStorage.getItem("statehub-theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (e) { /* storage disabled: follow prefers-color-scheme */ }
})();
