/*
 * The signing ceremony: which parts of the page show for the signer's status, and the outcomes
 * (signed, declined, locked, waiting, closed) told to the signer and to the embedding page.
 */

import { $, say, sayFinal } from "../access/dom.js";
import { notifyParent } from "../access/embedder.js";
import { sentMessage, showCodeEntry } from "../access/code-entry.js";
import { recordView } from "./documents.js";

const POLL_FAST_MS = 2000;
const POLL_SLOW_MS = 15000; // a TSA outage may last hours: stop hammering after 5 minutes
const POLL_FAST_FOR_MS = 5 * 60 * 1000;

// ---------------------------------------------------------------------------------------------
// Phases: which parts of the page are shown for the signer's status

export const ACTIVE = ["identify", "ready"];

/** Identifications that ask for a one-time code on this page (by email or by SMS). */
const BY_CODE = ["email_otp", "sms_otp"];

export function setPhase(ctx, status) {
  ctx.status = status;
  const active = ACTIVE.includes(status);
  const signing = active && ctx.role !== "viewer";
  $("identify-step").hidden = !(status === "identify" && BY_CODE.includes(ctx.identification));
  $("consent-step").hidden = !signing;
  $("signature-step").hidden = !signing || ctx.role === "approver";
  $("actions").hidden = !signing;
  $("view-actions").hidden = !(active && ctx.role === "viewer");
  if (!signing) closeDecline(false);
  if (ctx.mode === "draw" && signing) ctx.pad.redraw();
  updateButtons(ctx);
}

function identified(ctx) {
  return !BY_CODE.includes(ctx.identification) || ctx.status === "ready";
}

function hasSignature(ctx) {
  if (ctx.role === "approver") return true;
  if (ctx.mode === "type") return $("typed-name").value.trim().length > 0;
  return ctx.pad.hasInk();
}

/** The Sign button says what is still missing, rather than sitting there greyed out. */
export function updateButtons(ctx) {
  const missing = [];
  if (!ctx.pageShown) missing.push("wait for the document to appear");
  if (!identified(ctx)) missing.push("confirm it's you");
  if (!$("consent").checked) missing.push("tick the consent box");
  if (!hasSignature(ctx)) {
    missing.push(ctx.mode === "type" ? "type your name" : "draw your signature");
  }
  $("sign").disabled = ctx.busy || missing.length > 0;
  $("sign-hint").textContent = missing.length
    ? "To " + ctx.verb.toLowerCase() + ": " + missing.join(", ") + "."
    : "";
  $("done").disabled = ctx.busy || !identified(ctx) || !ctx.pageShown;
  $("decline-confirm").disabled = ctx.busy || !$("decline-reason").value.trim();
}

/** Apply a GET /state answer (on load and while polling). */
export function applyState(ctx, state) {
  switch (state.status) {
    case "identify":
    case "ready":
      setPhase(ctx, state.status);
      if (state.status === "identify" && state.otp) {
        showCodeEntry(state.otp);
        say(sentMessage(state.otp), "info");
      }
      if (state.message) say(state.message, "info");
      return;
    case "signing_pending":
      setPhase(ctx, "signing_pending");
      sayFinal(state.message || PENDING_MESSAGE, "info"); // nothing more to do but wait
      startPolling(ctx);
      return;
    case "signed":
      return finishSigned(ctx, state.message);
    case "declined":
      return finishDeclined(ctx, state.message);
    case "locked":
      return finishLocked(ctx, state.message);
    case "waiting": // sequential signing, not this signer's turn yet
      return finishBlocked(ctx, "waiting", state.message || WAITING_MESSAGE);
    default: // closed, or a status this page does not know: nothing more can be done here
      return finishBlocked(ctx, "closed", state.message || "This signing request is closed.");
  }
}

const WAITING_MESSAGE = "It is not your turn yet: you will get an email when it is.";
const PENDING_MESSAGE =
  "Your signature is recorded and will be applied in a moment. You can keep this page open.";
const LOCKED_MESSAGE =
  "Too many wrong codes: this link is locked for your security. " +
  "Please ask the sender for a new one.";

/**
 * Final outcomes are told to the embedder once per page, and only when they happen while the
 * page is open: a page opened on an already signed request has nothing new to tell.
 */
function notifyOutcome(ctx, status, type, extra) {
  if (ctx.startStatus === status || ctx.notified.has(status)) return;
  ctx.notified.add(status);
  notifyParent(ctx.config, type, extra);
}

const THANKS = {
  signer: "Signed. Thank you.",
  approver: "Approved. Thank you.",
  viewer: "Thank you. You can close this page.", // the server reports a viewer done as signed
};

function finishSigned(ctx, message) {
  setPhase(ctx, "signed");
  const thanks = THANKS[ctx.role] || THANKS.signer;
  sayFinal(message || thanks, "success");
  notifyOutcome(ctx, "signed", "sealpost:signed");
}

function finishDeclined(ctx, message) {
  setPhase(ctx, "declined");
  sayFinal(message || "You declined", "info");
  notifyOutcome(ctx, "declined", "sealpost:declined");
}

/**
 * Unlike signed and declined, a page that opens locked, closed or waiting is news to the
 * embedder: the signer cannot do anything here.
 */
function finishBlocked(ctx, status, message) {
  setPhase(ctx, status);
  sayFinal(message, status === "locked" ? "error" : "info");
  if (ctx.notified.has(status)) return;
  ctx.notified.add(status);
  notifyParent(ctx.config, "sealpost:error", { error: status, message: message });
}

export function finishLocked(ctx, message) {
  finishBlocked(ctx, "locked", message || LOCKED_MESSAGE);
}

/** Show the server's message; tell the embedder about failures it may want to react to. */
export function onError(ctx, err, options) {
  if (err.status === 423) return finishLocked(ctx, err.message);
  say(err.message, "error");
  if (!(options && options.quiet)) {
    notifyParent(ctx.config, "sealpost:error", { error: err.kind, message: err.message });
  }
}

// ---------------------------------------------------------------------------------------------
// Signing, declining, acknowledging

export async function sign(ctx) {
  if ($("sign").disabled) return;
  const body = { consent: true, image_png: null, typed: null };
  if (ctx.role === "approver") body.typed = ctx.config.signer.name;
  else if (ctx.mode === "type") body.typed = $("typed-name").value.trim();
  else body.image_png = ctx.pad.toBase64Png();
  ctx.busy = true;
  updateButtons(ctx);
  say(ctx.role === "approver" ? "Recording your approval…" : "Signing…", "info");
  try {
    await recordView(ctx);
    const result = await ctx.api.post("/sign", body);
    if (result && result.status === "signing_pending") {
      applyState(ctx, result);
    } else {
      finishSigned(ctx);
    }
  } catch (err) {
    await reconcile(ctx, err);
  } finally {
    ctx.busy = false;
    updateButtons(ctx);
  }
}

/**
 * A sign or decline that failed may still have happened (the answer was lost, or a second tab
 * did it): ask the server where things stand before showing an error.
 */
async function reconcile(ctx, err) {
  if (err.status === 0 || err.status === 409) {
    try {
      const state = await ctx.api.get("/state");
      if (!ACTIVE.includes(state.status)) return applyState(ctx, state);
    } catch (ignored) {
      // Still unreachable: report the first error.
    }
  }
  onError(ctx, err);
}

function startPolling(ctx) {
  if (ctx.polling) return;
  ctx.polling = true;
  const started = Date.now();
  const tick = async () => {
    if (!document.hidden) {
      try {
        const state = await ctx.api.get("/state");
        if (state.status !== "signing_pending") {
          ctx.polling = false;
          return applyState(ctx, state);
        }
        if (state.message) say(state.message, "info");
      } catch (err) {
        // A lost connection or a server hiccup passes: the signature is recorded, keep asking.
        // Any other refusal (session expired, locked) will not go away by asking again.
        if (err.status !== 0 && err.status < 500) {
          ctx.polling = false;
          return onError(ctx, err);
        }
      }
    }
    const fast = Date.now() - started < POLL_FAST_FOR_MS;
    setTimeout(tick, fast ? POLL_FAST_MS : POLL_SLOW_MS);
  };
  setTimeout(tick, POLL_FAST_MS);
}

export function openDecline() {
  $("decline-form").hidden = false;
  $("decline").setAttribute("aria-expanded", "true");
  $("decline-reason").focus();
}

export function closeDecline(focusLink) {
  $("decline-form").hidden = true;
  $("decline").setAttribute("aria-expanded", "false");
  if (focusLink) $("decline").focus();
}

export async function decline(ctx, event) {
  event.preventDefault();
  const reason = $("decline-reason").value.trim();
  if (!reason) {
    say("Please tell us why you decline.", "error");
    $("decline-reason").focus();
    return;
  }
  ctx.busy = true;
  updateButtons(ctx);
  try {
    await ctx.api.post("/decline", { reason: reason });
    finishDeclined(ctx);
  } catch (err) {
    await reconcile(ctx, err);
  } finally {
    ctx.busy = false;
    updateButtons(ctx);
  }
}

/** A viewer acknowledges once the document is on screen and its viewing is on record. */
export async function acknowledge(ctx) {
  ctx.busy = true;
  updateButtons(ctx);
  try {
    await recordView(ctx); // for a viewer, the viewing is the acknowledgement
    setPhase(ctx, "done");
    sayFinal(THANKS.viewer, "success");
  } catch (err) {
    onError(ctx, err);
  } finally {
    ctx.busy = false;
    updateButtons(ctx);
  }
}
