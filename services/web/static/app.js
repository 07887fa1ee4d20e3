// Bazaar's only script: an order page whose checkout is still running asks the storefront
// (which long-polls the API) until the order settles, then shows it. Without JavaScript the
// page refreshes itself instead.
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
