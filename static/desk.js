// Barcode scanners type the code and press Enter. In a form with two scans (item, then card),
// Enter in a field marked data-next moves the cursor on instead of sending the form, so the
// next scan lands where it should. Everything else works without this script.
document.addEventListener("keydown", (event) => {
  const field = event.target;
  if (event.key !== "Enter" || !(field instanceof HTMLInputElement) || !field.dataset.next) {
    return;
  }
  const next = document.getElementById(field.dataset.next);
  if (!next || field.value.trim() === "") {
    return; // an empty field: let the browser say it is required
  }
  event.preventDefault();
  next.focus();
  next.select();
});
