// The settings page's live SMS preview. The server measures (POST /desk/settings/preview,
// the sender's own renderer and segment counter); this only sends the form and shows the
// answer. Without this script the form's Preview button does the same with a page load.
(function () {
  "use strict";
  var form = document.getElementById("settings");
  var text = document.getElementById("preview-opt-in-text");
  var optIn = document.getElementById("preview-opt-in-count");
  var footer = document.getElementById("preview-footer-count");
  if (!form || !text || !optIn || !footer) { return; }
  var timer = null;
  var asked = 0;

  function show(element, measured) {
    element.textContent = measured.error || measured.summary;
    element.classList.toggle("error", Boolean(measured.error));
  }

  function refresh() {
    var ask = ++asked;
    fetch("/desk/settings/preview", {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) { throw new Error("preview failed: " + response.status); }
      return response.json();
    }).then(function (answer) {
      if (ask !== asked) { return; }  // a later keystroke's answer is on its way
      text.textContent = answer.opt_in.error ? "" : answer.opt_in.text;
      show(optIn, answer.opt_in);
      show(footer, answer.footer);
    }).catch(function () {
      optIn.textContent = "The preview is not available: use the Preview button.";
    });
  }

  ["sms_opt_in_message", "sms_opt_out_footer", "name"].forEach(function (id) {
    var input = document.getElementById(id);
    if (!input) { return; }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
  });
}());
