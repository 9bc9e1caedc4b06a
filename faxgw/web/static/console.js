// faxgw Web Config: small comforts for browsers with JavaScript; every page works without.
// The Copy button beside the sign-in code.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(button.dataset.copy).then(function () {
      button.textContent = "Copied";
    });
  });
});
// The Job status table refreshes itself (htmx, loaded by that page alone): say so.
document.addEventListener("DOMContentLoaded", function () {
  if (window.htmx) {
    document.querySelectorAll("[data-live]").forEach(function (note) { note.hidden = false; });
  }
});
