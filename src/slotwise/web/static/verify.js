// The verify page with Stripe: Stripe.js lets the customer confirm the payment with their bank
// (3-D Secure), then the form posts to slotwise, which asks Stripe how it went. Card data and the
// bank's page stay with Stripe.
(function () {
  "use strict";
  var form = document.getElementById("stripe-verify");
  if (!form || typeof window.Stripe !== "function") { return; }
  var status = form.querySelector("[data-verify-status]");
  var stripe = window.Stripe(form.dataset.publishableKey);
  var sent = false;
  form.addEventListener("submit", function (event) {
    if (sent) { return; }
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    if (status) { status.textContent = "Waiting for your bank…"; }
    var data = form.dataset.paymentMethod ? { payment_method: form.dataset.paymentMethod } : {};
    stripe.confirmCardPayment(form.dataset.clientSecret, data).then(function () {
      // Whatever the bank answered, slotwise asks the processor: a refusal voids, a success pays.
      sent = true;
      form.submit();
    });
  });
}());
