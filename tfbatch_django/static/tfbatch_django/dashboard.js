// Batching dashboard: re-fetch the live part every few seconds and swap it in.
// The server renders everything (figures and SVG charts); this only fetches.
(function () {
  "use strict";
  var root = document.getElementById("tfbatch-dashboard");
  if (!root) {
    return;
  }
  var live = document.getElementById("tfbatch-live");
  var status = document.getElementById("tfbatch-refresh-status");
  var every = Math.max(1, parseFloat(root.dataset.refreshSeconds) || 5) * 1000;
  var timer = null;
  var busy = false;

  function report(message) {
    status.textContent = message;
    status.classList.toggle("error", message !== "");
  }

  function openDetails() {
    return Array.prototype.map.call(live.querySelectorAll("details[open][data-key]"), function (d) {
      return d.dataset.key;
    });
  }

  var stopped = false;

  function refresh() {
    timer = null;
    if (busy || document.hidden) {  // a background tab does not poll; it refreshes when shown again
      return;
    }
    busy = true;
    fetch(root.dataset.liveUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected || response.status === 403) {
          stopped = true;  // the session ended or the permission went: polling cannot help
          throw new Error(response.redirected ? "session ended; reload the page to log in again" : "permission denied");
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var open = openDetails();
        live.innerHTML = html;
        open.forEach(function (key) {
          live.querySelectorAll("details[data-key]").forEach(function (d) {
            if (d.dataset.key === key) {
              d.open = true;
            }
          });
        });
        report("");
      })
      .catch(function (error) {
        report("· refresh failed: " + error.message);
      })
      .then(function () {
        busy = false;
        schedule();
      });
  }

  function schedule() {
    if (timer === null && !stopped) {
      timer = window.setTimeout(refresh, every);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && !stopped) {
      refresh();
    }
  });
  schedule();
})();
