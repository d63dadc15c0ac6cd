/*
 * Sealpost signing page: the browser side of the ceremony (an ES module; no build step).
 *
 * One entry for both templates.  sign.html carries a config with the single-use link, which this
 * script spends for a session token, then runs the ceremony (identify, view, consent, sign or
 * decline); sign_error.html carries only the ids and an `error` kind, and this script just tells
 * the embedding page about it.
 *
 * Nothing inline: the page's CSP is script-src 'self' and style-src 'self', so every listener is
 * attached here and every style lives in sign.css (setting element.style from script is CSSOM,
 * which CSP allows).  What any page a person opens shares (the session and its API calls, code
 * entry, the status line, postMessage to the embedder) is the access kit's, under
 * /static/access/; this folder holds what is the signing page's own.
 */

import { $, readConfig, say } from "../access/dom.js";
import { makeApi, openSession } from "../access/api.js";
import { wireCodeEntry } from "../access/code-entry.js";
import { notifyParent } from "../access/embedder.js";
import {
  ACTIVE,
  acknowledge,
  applyState,
  closeDecline,
  decline,
  finishLocked,
  onError,
  openDecline,
  setPhase,
  sign,
  updateButtons,
} from "./ceremony.js";
import { reloadBlockedPages, renderDocuments } from "./documents.js";
import { makePad, setupTabs } from "./pad.js";

const SESSION_HEADER = "X-Signing-Session";


/** Words that depend on the role: the template only knows the signer's name. */
function applyRole(ctx) {
  const words = {
    signer: ["Signing as", "Sign"],
    approver: ["Approving as", "Approve"],
    viewer: ["Viewing as", "Review"],
  }[ctx.role] || ["Signing as", "Sign"];
  $("acting-as").textContent = words[0];
  $("panel-heading").textContent = words[1];
  $("sign").textContent = words[1];
  ctx.verb = words[1];
  document.body.dataset.role = ctx.role;
}

function wire(ctx) {
  wireCodeEntry(ctx.api, {
    onVerified: (result) => {
      setPhase(ctx, result.status || "ready");
      say("Thank you, that's you.", "success");
      reloadBlockedPages(ctx);
      const next = ctx.role === "viewer" ? $("done") : $("consent");
      if (next) next.focus();
    },
    onError: (err, options) => onError(ctx, err, options),
  });
  $("consent").addEventListener("change", () => updateButtons(ctx));
  $("typed-name").addEventListener("input", () => updateButtons(ctx));
  $("signature-clear").addEventListener("click", () => ctx.pad.clear());
  $("sign").addEventListener("click", () => sign(ctx));
  $("decline").addEventListener("click", () =>
    $("decline-form").hidden ? openDecline() : closeDecline(true)
  );
  $("decline-cancel").addEventListener("click", () => closeDecline(true));
  $("decline-reason").addEventListener("input", () => updateButtons(ctx));
  $("decline-form").addEventListener("submit", (event) => decline(ctx, event));
  $("done").addEventListener("click", () => acknowledge(ctx));
}

// -----------------------------------------------------------------------------------------------
// Start-up

function startCeremony(config) {
  const signer = config.signer || {};
  const ctx = {
    config: config,
    api: makeApi(config, SESSION_HEADER),
    role: signer.role || "signer",
    identification: signer.identification || "none",
    startStatus: config.status,
    status: config.status,
    mode: "draw",
    busy: false,
    viewed: null, // the POST /view promise
    pageShown: false,
    notified: new Set(),
    polling: false,
    blockedPages: new Set(),
    verb: "Sign",
  };
  ctx.update = () => updateButtons(ctx);
  ctx.pad = makePad($("signature-pad"), ctx.update);
  $("consent-text").textContent = config.consent_text || "";
  applyRole(ctx);
  setupTabs(ctx);
  wire(ctx);
  renderDocuments(ctx);
  // The config says where things stood; /state adds what it does not carry: a code sent
  // before a reload, the server's message for a closed process.  A page that opens on an
  // outcome waits for that message, so the embedder is told the server's words.
  const settled = !ACTIVE.includes(config.status) && config.status !== "signing_pending";
  if (settled) setPhase(ctx, config.status);
  else applyState(ctx, { status: config.status });
  ctx.api.get("/state").then(
    (state) => {
      if (settled || state.status !== ctx.status || state.otp || state.message) {
        applyState(ctx, state);
      }
    },
    (err) => {
      if (err.status === 423) finishLocked(ctx, err.message);
      else if (settled) applyState(ctx, { status: config.status });
    }
  );
}

/**
 * sign_error.html: a link used, expired or unknown (config.error set: tell the embedder), or
 * an answer such as "a new link is on its way" (no error: nothing to tell).  The page already
 * says it all, so this only reads it.
 */
function startNoticePage(config) {
  if (!config || !config.error) return;
  const message = $("status").textContent.trim() || undefined;
  notifyParent(config, "sealpost:error", { error: config.error, message: message });
}

async function main() {
  const config = readConfig();
  if (document.body.classList.contains("error-page")) return startNoticePage(config);
  if (!config || !config.api_base || !(config.session_token || config.open_url)) {
    say("This page could not start. Please open the link from your email again.", "error");
    return;
  }
  if (!config.session_token) {
    let opened;
    try {
      opened = await openSession(config);
    } catch (err) {
      say(err.message, "error");
      notifyParent(config, "sealpost:error", { error: err.kind, message: err.message });
      return;
    }
    if (!opened) return;
    config.session_token = opened.session_token;
    config.status = opened.status;
    delete config.link; // spent: nothing in the page can open it again
  }
  startCeremony(config);
}

main(); // a module runs once the document is parsed
