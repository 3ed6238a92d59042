// Entry point of the val code editor bundle: exposes window.ValEditor.
// Built by build.sh into static/vals/codemirror-<version>.js, so pages load it
// with a plain <script> tag and no Node is needed at run time.

import { EditorState, Prec } from "@codemirror/state";
import {
  EditorView,
  keymap,
  lineNumbers,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  drawSelection,
  dropCursor,
} from "@codemirror/view";
import {
  HighlightStyle,
  syntaxHighlighting,
  bracketMatching,
  indentOnInput,
  foldGutter,
  foldKeymap,
} from "@codemirror/language";
import {
  defaultKeymap,
  history,
  historyKeymap,
  indentWithTab,
} from "@codemirror/commands";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { javascript } from "@codemirror/lang-javascript";
import { tags as t } from "@lezer/highlight";

const MONO =
  'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace';

const lightTheme = EditorView.theme(
  {
    "&": {
      color: "#1f2328",
      backgroundColor: "#ffffff",
      fontSize: "14px",
      border: "1px solid #e5e7eb",
      borderRadius: "6px",
    },
    "&.cm-focused": { outline: "none", borderColor: "#94a3b8" },
    ".cm-scroller": { fontFamily: MONO, lineHeight: "1.5" },
    ".cm-content": { padding: "8px 0", caretColor: "#1f2328" },
    ".cm-line": { padding: "0 12px 0 8px" },
    ".cm-cursor, .cm-dropCursor": { borderLeftColor: "#1f2328" },
    "&.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground, .cm-selectionBackground, ::selection":
      { backgroundColor: "#dbeafe" },
    ".cm-gutters": {
      backgroundColor: "#fafafa",
      color: "#9ca3af",
      borderRight: "1px solid #f0f0f0",
      borderRadius: "6px 0 0 6px",
    },
    ".cm-lineNumbers .cm-gutterElement": { padding: "0 8px 0 12px" },
    ".cm-activeLine": { backgroundColor: "#f6f8fa" },
    ".cm-activeLineGutter": { backgroundColor: "#f0f2f4", color: "#4b5563" },
    ".cm-foldGutter .cm-gutterElement": { padding: "0 4px", cursor: "pointer" },
    ".cm-foldPlaceholder": {
      backgroundColor: "#f3f4f6",
      border: "1px solid #e5e7eb",
      color: "#6b7280",
    },
    "&.cm-focused .cm-matchingBracket": {
      backgroundColor: "#e0f2e9",
      outline: "1px solid #a7d7bd",
    },
    "&.cm-focused .cm-nonmatchingBracket": { backgroundColor: "#fde2e1" },
    ".cm-selectionMatch": { backgroundColor: "#fef3c7" },
    ".cm-searchMatch": { backgroundColor: "#fde68a", outline: "1px solid #f59e0b" },
    ".cm-searchMatch.cm-searchMatch-selected": { backgroundColor: "#fdba74" },
    ".cm-panels": { backgroundColor: "#fafafa", color: "#1f2328" },
    ".cm-panels.cm-panels-bottom": { borderTop: "1px solid #e5e7eb" },
    ".cm-tooltip": { border: "1px solid #e5e7eb", backgroundColor: "#ffffff" },
  },
  { dark: false },
);

// Colours close to GitHub's light theme, which most users already read easily.
const lightHighlight = HighlightStyle.define([
  { tag: [t.comment, t.lineComment, t.blockComment], color: "#6e7781", fontStyle: "italic" },
  { tag: [t.keyword, t.modifier, t.operatorKeyword, t.controlKeyword, t.definitionKeyword, t.moduleKeyword], color: "#cf222e" },
  { tag: [t.string, t.special(t.string), t.regexp], color: "#0a3069" },
  { tag: [t.number, t.bool, t.null, t.atom], color: "#0550ae" },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], color: "#8250df" },
  { tag: [t.definition(t.variableName), t.definition(t.propertyName)], color: "#953800" },
  { tag: [t.typeName, t.className, t.namespace], color: "#953800" },
  { tag: t.propertyName, color: "#0550ae" },
  { tag: [t.tagName, t.angleBracket], color: "#116329" },
  { tag: t.attributeName, color: "#0550ae" },
  { tag: [t.self, t.special(t.variableName)], color: "#cf222e" },
  { tag: t.invalid, color: "#cf222e", textDecoration: "underline wavy" },
]);

/**
 * Create an editor inside `parent`.
 *
 * options: {parent, doc = "", readOnly = false, nonce, onChange(doc), onSave(), onRun()}
 * `nonce` is the page's Content-Security-Policy nonce: CodeMirror puts its styles in a
 * <style> element, which a strict style-src only allows with it.
 * returns: {view, getValue(), setValue(text), focus(), destroy()}
 */
function create(options) {
  const {
    parent,
    doc = "",
    readOnly = false,
    nonce,
    onChange,
    onSave,
    onRun,
  } = options || {};
  if (!parent) throw new Error("ValEditor.create: `parent` element is required");

  // Highest precedence so the browser's "Save page" dialog never opens, even
  // when another keymap would also handle the key.
  const appKeys = Prec.highest(
    keymap.of([
      {
        key: "Mod-s",
        preventDefault: true,
        run: () => {
          if (onSave) onSave();
          return true;
        },
      },
      {
        // Without onRun the key falls through to insertBlankLine.
        key: "Mod-Enter",
        run: () => {
          if (!onRun) return false;
          onRun();
          return true;
        },
      },
    ]),
  );

  const extensions = [
    appKeys,
    lineNumbers(),
    highlightActiveLineGutter(),
    foldGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    dropCursor(),
    indentOnInput(),
    bracketMatching(),
    closeBrackets(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    javascript({ typescript: true, jsx: true }),
    syntaxHighlighting(lightHighlight),
    lightTheme,
    keymap.of([
      ...closeBracketsKeymap,
      ...defaultKeymap,
      ...searchKeymap,
      ...historyKeymap,
      ...foldKeymap,
      indentWithTab,
    ]),
    EditorState.readOnly.of(readOnly),
    ...(nonce ? [EditorView.cspNonce.of(nonce)] : []),
    EditorView.updateListener.of((update) => {
      if (update.docChanged && onChange) onChange(update.state.doc.toString());
    }),
  ];

  const view = new EditorView({
    parent,
    state: EditorState.create({ doc, extensions }),
  });

  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      if (text === view.state.doc.toString()) return;
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    focus: () => view.focus(),
    destroy: () => view.destroy(),
  };
}

// VERSION is replaced at build time with the @codemirror/view version.
window.ValEditor = { create, version: VERSION };
