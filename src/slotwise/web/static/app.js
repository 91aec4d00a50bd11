// slotwise pages: open and close dialogs, keep the Add/Remove numbers in step with the quantity
// (from the same preview the commit uses), confirm destructive forms, print invoices.
(() => {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  function openDialog(dialog) {
    if (dialog.open) dialog.close();
    dialog.showModal();
    const input = dialog.querySelector('input[type="number"]');
    if (input) { input.focus(); input.select(); }
  }

  function clamp(input, value) {
    const min = Number(input.min || 1), max = Number(input.max || 100);
    return Math.min(Math.max(value, min), max);
  }

  function setAllowed(dialog, allowed) {
    const submit = dialog.querySelector("[data-submit]");
    if (submit) submit.disabled = !allowed;
    const refusal = dialog.querySelector("[data-refusal]");
    if (refusal) refusal.hidden = allowed;
  }

  function showProblem(dialog, text) {
    const message = dialog.querySelector('[data-field="message"]');
    if (message) message.textContent = text;
    const mustFree = dialog.querySelector('[data-field="must_free"]');
    if (mustFree) mustFree.textContent = "";
    setAllowed(dialog, false);
  }

  async function refresh(dialog, input) {
    const quantity = Number(input.value);
    const min = Number(input.min || 1), max = Number(input.max || 100);
    if (input.value === "" || !Number.isInteger(quantity) || quantity < min || quantity > max) {
      showProblem(dialog, `Enter a whole number from ${min} to ${max}.`);
      return;
    }
    const ticket = (dialog.previewTicket = (dialog.previewTicket || 0) + 1);
    dialog.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(dialog.dataset.preview, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ action: dialog.dataset.action, quantity }),
      });
      const body = await response.json();
      if (ticket !== dialog.previewTicket) return; // a newer quantity is on its way
      if (!response.ok) {
        showProblem(dialog, (body.error && body.error.message) || "Couldn't update the price. Reload the page.");
        return;
      }
      for (const [field, text] of Object.entries(body.display)) {
        dialog.querySelectorAll(`[data-field="${field}"]`).forEach((el) => { el.textContent = text; });
      }
      setAllowed(dialog, body.allowed);
    } catch (error) {
      if (ticket === dialog.previewTicket) showProblem(dialog, "Couldn't reach slotwise. Check your connection.");
    } finally {
      if (ticket === dialog.previewTicket) dialog.removeAttribute("aria-busy");
    }
  }

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const opener = target.closest("[data-open]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.open);
      if (dialog) { event.preventDefault(); openDialog(dialog); }
      return;
    }
    if (target.closest("[data-close]")) { target.closest("dialog")?.close(); return; }
    if (target.closest("[data-print]")) { window.print(); return; }
    const step = target.closest("[data-step]");
    if (step) {
      const input = step.parentElement.querySelector('input[type="number"]');
      const current = Number.parseInt(input.value, 10);
      input.value = clamp(input, (Number.isNaN(current) ? 0 : current) + Number(step.dataset.step));
      input.dispatchEvent(new Event("input", { bubbles: true }));
      return;
    }
    if (target instanceof HTMLDialogElement && target.open) target.close(); // a click on the backdrop
  });

  document.querySelectorAll("dialog[data-preview]").forEach((dialog) => {
    const input = dialog.querySelector('input[type="number"]');
    if (!input) return;
    let timer;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => refresh(dialog, input), 150);
    });
  });

  // Destructive forms ask first, in a real dialog (window.confirm can't be styled or tested).
  const confirmDialog = document.getElementById("confirm-dialog");
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm || !confirmDialog) return;
    if (form.dataset.confirmed === "yes") return;
    event.preventDefault();
    confirmDialog.querySelector("[data-confirm-text]").textContent = form.dataset.confirm;
    confirmDialog.returnValue = "";
    confirmDialog.addEventListener("close", () => {
      if (confirmDialog.returnValue === "ok") { form.dataset.confirmed = "yes"; form.requestSubmit(); }
    }, { once: true });
    confirmDialog.showModal();
  });

  // One click, one charge: a submitted form's buttons rest until the next page arrives.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement) || form.method === "dialog") return;
    setTimeout(() => form.querySelectorAll('button[type="submit"]').forEach((b) => { b.disabled = true; }), 0);
  });

  const auto = document.querySelector("[data-autoopen]");
  if (auto) {
    const dialog = document.getElementById(auto.dataset.autoopen);
    if (dialog) openDialog(dialog);
  }
})();
