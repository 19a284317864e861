// The desk's one script. Everything works without it; it only saves the clerk keystrokes and
// reloads.

// Barcode scanners type the code and press Enter. In a form with several fields (item, then
// an optional email or mobile number, then card), Enter in a field marked data-next moves the
// cursor on instead of sending the form, so the next scan lands where it should.
document.addEventListener("keydown", (event) => {
  const field = event.target;
  if (event.key !== "Enter" || !(field instanceof HTMLInputElement) || !field.dataset.next) {
    return;
  }
  if ("submit" in field.dataset) {
    return; // the card is kept already: Enter sends the form
  }
  const next = document.getElementById(field.dataset.next);
  if (!next || (field.required && field.value.trim() === "")) {
    return; // an empty required field: let the browser say it is required
  }
  event.preventDefault();
  if (field.type === "email" && /^[0-9][0-9 -]{4,}$/.test(field.value.trim())) {
    // Digits are no address: this was the card, scanned while the cursor was here.
    const card = document.getElementById("card");
    if (card) {
      card.value = field.value.trim();
      field.value = "";
      field.form.requestSubmit();
      return;
    }
  }
  next.focus();
  next.select();
});

// "Print this list" buttons.
document.addEventListener("click", (event) => {
  if (event.target instanceof HTMLElement && "print" in event.target.dataset) {
    window.print();
  }
});

// After a check-in: follow the slip until it printed (or the printer said why not), and keep
// the printer banner current, without a reload.
const slipStatus = document.querySelector("[data-poll]");
if (slipStatus) {
  let polls = 0;
  const poll = async () => {
    polls += 1;
    try {
      const response = await fetch(slipStatus.dataset.poll, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) {
        const status = await response.json();
        // Changed only when it changed: a screen reader announces every change.
        if (status.slip && slipStatus.textContent !== status.slip.text) {
          slipStatus.textContent = status.slip.text;
          slipStatus.className = `slip-${status.slip.state}`;
        }
        const banner = document.getElementById("printer-banner");
        if (banner.dataset.shown !== status.banner) {
          banner.innerHTML = status.banner;
          banner.dataset.shown = status.banner;
        }
        if (status.slip && status.slip.settled) {
          return;
        }
      }
    } catch (error) {
      // the server is restarting: try again at the next tick
    }
    if (polls < 120) {
      window.setTimeout(poll, polls < 10 ? 1000 : 3000);
    }
  };
  window.setTimeout(poll, 700);
}
