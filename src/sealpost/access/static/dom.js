/*
 * What every page a person opens shares: the element lookup, the config block, the status line.
 *
 * The page's CSP is script-src 'self': no inline script, so the server hands its data over in a
 * <script type="application/json" id="sealpost-config"> block that readConfig() parses.
 */

export const $ = (id) => document.getElementById(id);

// -----------------------------------------------------------------------------------------------
// Status line: one aria-live region for every outcome, so screen readers hear each of them

export function say(text, kind) {
  const status = $("status");
  status.textContent = text || "";
  status.dataset.kind = kind || "info";
  // Never `hidden`: a live region must already be in the accessibility tree when its text
  // changes, or screen readers stay silent.  sign.css collapses it while it is empty.
}

/** Outcomes that remove the buttons: focus would fall back to <body>, so put it on the news. */
export function sayFinal(text, kind) {
  say(text, kind);
  document.body.classList.add("is-final");
  $("status").focus({ preventScroll: true });
  $("status").scrollIntoView({ block: "nearest" });
}


export function readConfig() {
  const block = $("sealpost-config");
  try {
    return block ? JSON.parse(block.textContent) : null;
  } catch (err) {
    return null;
  }
}
