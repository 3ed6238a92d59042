// The val page: a CodeMirror editor for the owner (or a read-only viewer), saving
// through htmx, with an unsaved-changes marker and a warning before leaving.
(function () {
  "use strict";

  // The Content-Security-Policy nonce, which the editor's <style> element must carry.
  const nonceMeta = document.querySelector("meta[name=csp-nonce]");
  const nonce = nonceMeta ? nonceMeta.nonce : undefined;

  const runForm = document.getElementById("run-form");
  function run() {
    if (runForm) runForm.requestSubmit();
  }
  // Ctrl/Cmd+Enter runs the val from anywhere on the page.
  // The editor handles its own keys (and marks the event handled): one press, one run.
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented) return;
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && runForm) {
      event.preventDefault();
      run();
    }
  });

  const form = document.getElementById("val-editor-form");
  if (!form) {
    const viewer = document.getElementById("viewer");
    const source = document.getElementById("code-view");
    if (viewer && source && window.ValEditor) {
      window.ValEditor.create({ parent: viewer, doc: source.textContent, readOnly: true, nonce });
      source.hidden = true;
    }
    return;
  }

  const codeInput = document.getElementById("code-input");
  const marker = document.getElementById("dirty-marker");
  const fields = () => new URLSearchParams(new FormData(form)).toString();

  let savedState = fields();
  let stateBeingSaved = null;

  function refreshMarker() {
    const dirty = fields() !== savedState;
    marker.hidden = !dirty;
    document.title = (dirty ? "● " : "") + document.title.replace(/^● /, "");
    return dirty;
  }

  function save() {
    form.requestSubmit();
  }

  if (window.ValEditor) {
    const editor = window.ValEditor.create({
      parent: document.getElementById("editor"),
      doc: codeInput.value,
      nonce,
      onChange(doc) {
        codeInput.value = doc;
        refreshMarker();
      },
      onSave: save,
      onRun: run,
    });
    codeInput.hidden = true;
    window.valEditor = editor;
  }

  form.addEventListener("input", refreshMarker);
  form.addEventListener("change", refreshMarker);

  // Ctrl/Cmd+S anywhere on the page saves, not only inside the editor.
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      event.preventDefault();
      save();
    }
  });

  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt === form) stateBeingSaved = fields();
  });
  // The server sends HX-Trigger: valSaved only when everything was saved.
  document.body.addEventListener("valSaved", function () {
    if (stateBeingSaved !== null) savedState = stateBeingSaved;
    stateBeingSaved = null;
    refreshMarker();
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt === form && !event.detail.successful) {
      document.getElementById("save-result").innerHTML =
        '<div class="errors" role="alert"><strong>Not saved.</strong> The server could not be reached ' +
        "or failed. Your changes are still in the editor; try again.</div>";
    }
  });

  // Run uses the saved version: offer to save unsaved changes first.
  document.body.addEventListener("htmx:confirm", function (event) {
    if (event.detail.elt !== runForm || !refreshMarker()) return;
    event.preventDefault();
    if (window.confirm("You have unsaved changes. Save them and run the new version?\n(Cancel runs the saved version.)")) {
      document.body.addEventListener("valSaved", () => event.detail.issueRequest(true), { once: true });
      save();
    } else {
      event.detail.issueRequest(true);
    }
  });

  window.addEventListener("beforeunload", function (event) {
    if (refreshMarker()) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
})();
