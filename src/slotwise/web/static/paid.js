// Paid agents. Agents → Visibility: turning Pay for Access on asks first, in a <dialog> that says what
// visitors will pay (from the form as typed). The paywall: with Stripe, the card is typed into
// Stripe's card Element and turned into a payment method by Stripe; only its id (pm_…) is posted.
// The receipt: copy the visitor token.
(() => {
  "use strict";

  const SYMBOLS = { usd: "$", eur: "€", gbp: "£" };

  // The price as typed, shown as money ("9.5" → "$9.50"); anything else as typed (the server judges it).
  function money(text, currency) {
    const value = (text || "").trim().replace(/^[$€£]/, "");
    if (!value) return "the price you set";
    const found = /^(\d[\d,]*)(?:\.(\d{1,2}))?$/.exec(value);
    if (!found || !SYMBOLS[currency]) return `${value} ${currency.toUpperCase()}`;
    return `${SYMBOLS[currency]}${found[1]}.${(found[2] || "").padEnd(2, "0")}`;
  }

  function confirmPaid(form) {
    const dialog = document.getElementById(form.dataset.confirmDialog);
    if (!dialog) return;
    // On the form itself, so it runs before the page-wide "one click" handler would rest the buttons.
    form.addEventListener("submit", (event) => {
      const chosen = form.querySelector('input[name="mode"]:checked');
      if (!chosen || chosen.value !== "paid" || form.dataset.currentMode === "paid") return;
      if (form.dataset.confirmed === "yes") return;
      event.preventDefault();
      event.stopImmediatePropagation();
      const value = (selector) => (form.querySelector(selector)?.value || "").trim();
      dialog.querySelector('[data-field="price"]').textContent = money(value("[data-price]"), value("[data-currency]") || "usd");
      const days = value("[data-days]"), credits = value("[data-credits]");
      dialog.querySelector('[data-field="gives"]').textContent =
        `${days || "?"} ${days === "1" ? "day" : "days"} · ${credits || "?"} ${credits === "1" ? "message" : "messages"}`;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => {
        if (dialog.returnValue === "ok") { form.dataset.confirmed = "yes"; form.requestSubmit(); }
      }, { once: true });
      dialog.showModal();
    });
  }

  function busy(form, text) {
    const submit = form.querySelector("[data-checkout-submit]");
    if (submit) window.setTimeout(() => { submit.disabled = true; submit.textContent = text; }, 0);
  }

  function stripePay(form) {
    const error = form.querySelector("[data-card-error]");
    const submit = form.querySelector("[data-checkout-submit]");
    if (typeof window.Stripe !== "function") {
      error.textContent = "Stripe's card form could not be loaded. Check your connection and reload the page.";
      submit.disabled = true;
      return;
    }
    const stripe = window.Stripe(form.dataset.publishableKey);
    const card = stripe.elements().create("card");
    card.mount(form.querySelector("[data-card-element]"));
    const pm = form.querySelector("[data-payment-method]");
    const label = submit.textContent;
    form.addEventListener("submit", async (event) => {
      if (pm.value) return;  // the payment method is made: this is the real submit
      event.preventDefault();
      event.stopImmediatePropagation();
      if (!form.reportValidity()) return;
      submit.disabled = true;
      submit.textContent = "Checking your card…";
      error.textContent = "";
      const email = form.querySelector('input[name="email"]').value;
      const result = await stripe.createPaymentMethod({ type: "card", card, billing_details: { email } });
      if (result.error || !result.paymentMethod) {
        error.textContent = (result.error && result.error.message) || "Your card could not be checked.";
        submit.disabled = false;
        submit.textContent = label;
        return;
      }
      pm.value = result.paymentMethod.id;
      submit.textContent = "Processing…";
      form.submit();
    });
  }

  function copyToken(button) {
    const input = document.getElementById(button.dataset.copy);
    const said = document.querySelector("[data-copied]");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (_) {
        input.select();
        document.execCommand("copy");
      }
      if (said) said.textContent = "Copied. Keep it somewhere safe.";
    });
  }

  function ready() {
    document.querySelectorAll("form[data-visibility][data-confirm-dialog]").forEach(confirmPaid);
    document.querySelectorAll("form[data-stripe-pay]").forEach(stripePay);
    document.querySelectorAll(".paywall-form:not([data-stripe-pay])").forEach((form) => {
      form.addEventListener("submit", () => busy(form, "Processing…"));
    });
    document.querySelectorAll("[data-copy]").forEach(copyToken);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
