// callgate console: small enhancements over server-rendered pages. Every
// page works without this file; it is loaded from this origin only (the
// Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  // "Select all" checks every enabled checkbox of the named group.
  document.addEventListener("change", function (ev) {
    var box = ev.target;
    if (!box || !box.matches || !box.matches("input[data-select-all]")) {
      return;
    }
    var form = box.form || document;
    var name = box.getAttribute("data-select-all");
    form.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (c) {
      if (!c.disabled) {
        c.checked = box.checked;
      }
    });
  });

  // An open dialog takes the focus, and Escape cancels it (its Cancel link).
  function focusDialog() {
    var d = document.querySelector("dialog[open]");
    if (!d) {
      return;
    }
    var first = d.querySelector("[id$='-cancel']") || d.querySelector("a, button");
    if (first) {
      first.focus();
    }
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") {
      return;
    }
    var cancel = document.querySelector("dialog[open] [id$='-cancel']");
    if (cancel) {
      ev.preventDefault();
      cancel.click();
    }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", focusDialog);
  } else {
    focusDialog();
  }
})();
