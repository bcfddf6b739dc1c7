// Forms marked data-once are sent once: after the first submit their buttons are disabled, and any
// further submit (a double click, Enter pressed again) is ignored until the next page loads. The
// server makes it safe anyway (a one-time form token); this spares the user the doubt.
(function () {
  "use strict";
  function guard(form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent === "true") {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "true";
      // Disabled after this event, not during it: the clicked button's name and value
      // (action=preview or action=submit) must still be part of what is sent.
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (button) {
          button.disabled = true;
          button.setAttribute("aria-disabled", "true");
        });
      }, 0);
    });
  }
  function reset() {
    // Back/forward cache: a page restored from it must be usable again.
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      form.dataset.sent = "false";
      form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (button) {
        button.disabled = false;
        button.removeAttribute("aria-disabled");
      });
    });
  }
  document.querySelectorAll("form[data-once]").forEach(guard);
  window.addEventListener("pageshow", function (event) { if (event.persisted) reset(); });
})();
