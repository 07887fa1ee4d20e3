// Bazaar's only script: an order page whose checkout is still running asks the storefront
// (which long-polls the API) until the order settles, then shows it (without JavaScript the
// page refreshes itself instead); the operations console redraws its figures every 5 seconds.
"use strict";
(function () {
  const status = document.getElementById("order-status");
  if (!status || status.dataset.settled === "true") return;
  const url = "/orders/" + encodeURIComponent(status.dataset.order) + "/status";
  async function poll() {
    try {
      const response = await fetch(url, { headers: { accept: "application/json" } });
      if (response.ok) {
        const answer = await response.json();
        if (answer.settled) {
          window.location.reload();
          return;
        }
      }
    } catch (_) {
      // The network blinked: ask again below.
    }
    setTimeout(poll, 1000);
  }
  poll();
})();

(function () {
  if (!document.querySelector("[data-live-console]")) return;
  // Each live section is replaced by its fresh copy, in place: the reader keeps their place,
  // and a form or link with focus is left alone until it loses it.
  async function refresh() {
    if (!document.hidden) {
      try {
        const response = await fetch(window.location.pathname, { headers: { accept: "text/html" } });
        if (response.ok && !response.redirected) {
          const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
          for (const section of document.querySelectorAll("[data-live][id]")) {
            const replacement = fresh.getElementById(section.id);
            if (replacement && !section.contains(document.activeElement)) {
              section.replaceWith(replacement);
            }
          }
        }
      } catch (_) {
        // The network blinked: try again next time.
      }
    }
    setTimeout(refresh, 5000);
  }
  setTimeout(refresh, 5000);
})();
