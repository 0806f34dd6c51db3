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
