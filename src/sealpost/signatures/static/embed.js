/*
 * Sealpost embed snippet: puts a signing page in an iframe and relays its events.
 *
 *   <script src="https://sealpost.example.com/static/embed.js"
 *           data-signing-url="https://sealpost.example.com/sign/<link>"
 *           data-target="#signature"></script>
 *
 * Optional: data-height (a number of pixels or any CSS length, default 800px) and data-title
 * (the iframe's accessible name).  The signing page posts {type: "sealpost:...", ...} messages;
 * this script accepts only those from its own iframe and from the signing URL's origin, and
 * dispatches each as a CustomEvent (detail = the message) on the target element and on window.
 * Several snippets on one page each relay their own iframe's messages.  Docs: docs/embedding.md.
 */
(function () {
  "use strict";

  const script = document.currentScript;
  if (!script) return; // only ever null for a module or a copied-in body: nothing to read

  const signingUrl = script.getAttribute("data-signing-url");
  let origin;
  try {
    origin = new URL(signingUrl, document.baseURI).origin;
  } catch (err) {
    console.error("Sealpost embed: data-signing-url is missing or is not a URL.");
    return;
  }

  function frameHeight() {
    const value = (script.getAttribute("data-height") || "").trim();
    if (!value) return "800px";
    return /^\d+(\.\d+)?$/.test(value) ? value + "px" : value;
  }

  function makeFrame() {
    const iframe = document.createElement("iframe");
    iframe.src = signingUrl;
    iframe.title = script.getAttribute("data-title") || "Document to sign";
    // Set through the CSSOM, which the host page's CSP allows even without 'unsafe-inline'.
    iframe.style.display = "block";
    iframe.style.width = "100%";
    iframe.style.height = frameHeight();
    iframe.style.border = "0";
    return iframe;
  }

  /** Relay the iframe's messages; anything else posting to this window is ignored. */
  function relay(iframe, target) {
    window.addEventListener("message", (event) => {
      if (event.origin !== origin || event.source !== iframe.contentWindow) return;
      const data = event.data;
      if (!data || typeof data !== "object" || typeof data.type !== "string") return;
      if (!data.type.startsWith("sealpost:")) return;
      // Not bubbling: a bubbling event from the element would reach window a second time.
      target.dispatchEvent(new CustomEvent(data.type, { detail: data }));
      window.dispatchEvent(new CustomEvent(data.type, { detail: data }));
    });
  }

  /** Into data-target if given (once it exists), else right after this script tag. */
  function mount() {
    const selector = script.getAttribute("data-target");
    const iframe = makeFrame();
    if (!selector) {
      script.insertAdjacentElement("afterend", iframe);
      relay(iframe, iframe);
      return true;
    }
    const target = document.querySelector(selector);
    if (!target) return false;
    target.appendChild(iframe);
    relay(iframe, target);
    return true;
  }

  if (mount()) return;
  // The script may sit in <head>, above its target: try again when the document is parsed.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => {
      if (!mount()) console.error("Sealpost embed: no element matches data-target.");
    });
  } else {
    console.error("Sealpost embed: no element matches data-target.");
  }
})();
