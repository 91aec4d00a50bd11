// Checkout: on Plans, a plan that goes through checkout says "Redirecting to checkout…" and follows
// its link (without JavaScript it is a plain link). On the checkout page with Stripe, the card is
// typed into Stripe's own Element and confirmed with Stripe (a SetupIntent); only the resulting
// payment method id (pm_…) is posted to slotwise, never the card number.
(() => {
  "use strict";

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-checkout-link]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    link.textContent = "Redirecting to checkout…";
    link.setAttribute("aria-busy", "true");
    link.classList.add("is-busy");
    // Let the label paint before the browser starts loading the checkout page.
    window.setTimeout(() => window.location.assign(link.href), 60);
  });

  function stripeCard(form) {
    if (typeof window.Stripe !== "function") {
      form.querySelector("[data-card-error]").textContent =
        "Stripe's card form could not be loaded. Check your connection and reload the page.";
      form.querySelector("[data-checkout-submit]").disabled = true;
      return;
    }
    const stripe = window.Stripe(form.dataset.publishableKey);
    const card = stripe.elements().create("card");
    card.mount(form.querySelector("[data-card-element]"));
    const submit = form.querySelector("[data-checkout-submit]");
    const error = form.querySelector("[data-card-error]");
    const pm = form.querySelector("[data-payment-method]");
    const label = submit.textContent;
    form.addEventListener("submit", async (event) => {
      if (pm.value) return;  // confirmed: this is the real submit
      event.preventDefault();
      submit.disabled = true;
      submit.textContent = "Confirming your card…";
      error.textContent = "";
      const result = await stripe.confirmCardSetup(form.dataset.clientSecret, { payment_method: { card } });
      if (result.error || !result.setupIntent) {
        error.textContent = (result.error && result.error.message) || "Your card could not be confirmed.";
        submit.disabled = false;
        submit.textContent = label;
        return;
      }
      const method = result.setupIntent.payment_method;
      pm.value = typeof method === "string" ? method : method.id;
      submit.textContent = "Processing…";
      form.submit();
    });
  }

  function ready() {
    document.querySelectorAll("form[data-stripe-card]").forEach(stripeCard);
    document.querySelectorAll("form:not([data-stripe-card]) [data-checkout-submit]").forEach((button) => {
      button.form.addEventListener("submit", () => {
        // One submit: a second click while the first is on its way would be refused anyway.
        window.setTimeout(() => { button.disabled = true; button.textContent = "Processing…"; }, 0);
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
