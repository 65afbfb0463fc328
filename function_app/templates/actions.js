// The actions post to the API's own routes. In Azure the page is opened with `?code=<function key>`:
// the key goes on as `x-functions-key`. Without this script the forms still post (an empty body)
// and the browser shows the API's JSON answer.
(function () {
  "use strict";
  var key = new URLSearchParams(window.location.search).get("code");
  var answer = document.getElementById("action-answer");
  document.querySelectorAll("form[data-action]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var headers = {"Content-Type": "application/json"};
      if (key) { headers["x-functions-key"] = key; }
      var body = {};
      var reason = form.querySelector("[data-field=reason]");
      if (reason && reason.value.trim()) { body.reason = reason.value.trim(); }
      if (form.dataset.action === "cancel") { body.by = "runs page"; }
      var button = form.querySelector("button");
      button.disabled = true;
      answer.textContent = "Sending…";
      fetch(form.action, {method: "POST", headers: headers, body: JSON.stringify(body)})
        .then(function (response) {
          return response.json().catch(function () { return {}; }).then(function (data) {
            if (!response.ok) {
              throw new Error((data.error && data.error.message) || ("The API answered " + response.status + "."));
            }
            if (form.dataset.next && data.run_id) {
              window.location.assign(form.dataset.next + encodeURIComponent(data.run_id) + window.location.search);
            } else {
              window.location.reload();
            }
          });
        })
        .catch(function (error) { answer.textContent = error.message; button.disabled = false; });
    });
  });
})();
