// Progressive enhancement only: every page reads without JavaScript.
// Elements marked data-confirm ask before their form is sent.
document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var text = form && form.getAttribute && form.getAttribute("data-confirm");
  if (text && !window.confirm(text)) ev.preventDefault();
});
