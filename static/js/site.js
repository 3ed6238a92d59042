// Behaviour every page shares. Loaded as a file: the Content-Security-Policy allows no
// inline scripts or on*= attributes.
(function () {
  "use strict";

  // <form data-confirm="Delete API_KEY?"> asks before it submits.
  document.addEventListener("submit", function (event) {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
