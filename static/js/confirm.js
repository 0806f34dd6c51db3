// The page's few behaviours, kept out of the HTML so the Content-Security-Policy can forbid inline
// script (script-src 'self'): no onclick/onsubmit attributes anywhere, only data attributes.
//
// Irreversible actions: a form with data-confirm asks first and, if the user agrees, sends
// confirm=yes. Without JavaScript the server asks instead (the same sentence, on a page of its own).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var message = form.getAttribute && form.getAttribute("data-confirm");
  if (!message || form.querySelector('input[name="confirm"][value="yes"]')) return;
  if (!window.confirm(message)) { event.preventDefault(); return; }
  var input = document.createElement("input");
  input.type = "hidden"; input.name = "confirm"; input.value = "yes";
  form.appendChild(input);
});

document.addEventListener("click", function (event) {
  var target = event.target.closest ? event.target.closest("[data-print], button[data-confirm]") : null;
  if (!target) return;
  // A print button: <button type="button" data-print>.
  if (target.hasAttribute("data-print")) { event.preventDefault(); window.print(); return; }
  // A submit button that asks before its form is sent: <button type="submit" data-confirm="...">.
  if (!window.confirm(target.getAttribute("data-confirm"))) event.preventDefault();
});
