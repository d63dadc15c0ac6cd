/*
 * Entering a one-time code: ask for one, type it, have it checked.
 *
 * The page has #otp-send (button), #otp-form with #otp-code, #otp-verify and #otp-hint, and a
 * status line (#status).  The server answers POST <api>/otp with {sent_to, channel, expires_at}
 * (channel "email" or "sms"; sent_to already masked: j***@example.com, +34 6•• ••• •12) and
 * POST <api>/otp/verify with 200, or 422 and attempts_left, or 423 once locked; the page
 * decides what a verified code leads to (hooks.onVerified) and how errors show
 * (hooks.onError(err, {quiet})).
 */

import { $, say } from "./dom.js";

const RESEND_COOLDOWN_S = 30; // a message can take a while; each send replaces the last code

async function sendCode(api, hooks) {
  const button = $("otp-send");
  button.disabled = true;
  try {
    const sent = await api.post("/otp");
    showCodeEntry(sent);
    say(sentMessage(sent), "info");
    $("otp-code").value = "";
    $("otp-code").focus();
    cooldown(button);
  } catch (err) {
    button.disabled = false;
    hooks.onError(err, { quiet: err.status === 429 });
  }
}

export function sentMessage(sent) {
  const minutes = minutesUntil(sent.expires_at);
  const unit = minutes === 1 ? " minute" : " minutes";
  const validity = minutes ? " (valid " + minutes + unit + ")" : "";
  return "We sent a 6-digit code " + by(sent) + "to " + sent.sent_to + validity;
}

function by(sent) {
  return sent.channel === "sms" ? "by SMS " : "";
}

/** Minutes left, or null when the client's clock is too far off to say anything sensible. */
function minutesUntil(iso) {
  const ms = Date.parse(iso) - Date.now();
  if (!Number.isFinite(ms) || ms <= 0 || ms > 24 * 3600 * 1000) return null;
  return Math.max(1, Math.round(ms / 60000));
}

export function showCodeEntry(sent) {
  $("otp-form").hidden = false;
  $("otp-send").textContent = "Send a new code";
  $("otp-hint").textContent = "Enter the code we sent " + by(sent) + "to " + sent.sent_to + ".";
}

/** Resending at once makes two emails race and the older code fail: make people wait a bit. */
function cooldown(button) {
  let left = RESEND_COOLDOWN_S;
  const label = "Send a new code";
  button.disabled = true;
  button.textContent = label + " (" + left + " s)";
  const timer = setInterval(() => {
    left -= 1;
    if (left > 0) {
      button.textContent = label + " (" + left + " s)";
      return;
    }
    clearInterval(timer);
    button.textContent = label;
    button.disabled = false;
  }, 1000);
}

async function verifyCode(api, hooks, event) {
  event.preventDefault();
  const input = $("otp-code");
  const code = input.value.replace(/\D/g, "");
  if (code.length !== 6) {
    say("The code has 6 digits.", "error");
    input.focus();
    return;
  }
  $("otp-verify").disabled = true;
  try {
    const result = await api.post("/otp/verify", { code: code });
    hooks.onVerified(result);
  } catch (err) {
    if (err.status === 422 && typeof err.body.attempts_left === "number") {
      const n = err.body.attempts_left;
      say("Wrong code: " + n + (n === 1 ? " attempt left" : " attempts left"), "error");
      input.select();
    } else {
      hooks.onError(err, { quiet: err.status === 422 });
    }
  } finally {
    $("otp-verify").disabled = false;
  }
}

/**
 * Keep the field to 6 digits: a pasted "123 456" or "123-456" still works.  (No maxlength on
 * the input: it would cut "123 456" to "123 45" before this runs.)
 */
function tidyCode() {
  const input = $("otp-code");
  const digits = input.value.replace(/\D/g, "").slice(0, 6);
  if (digits !== input.value) input.value = digits;
}

/** Attach the code entry's listeners; ``api`` is makeApi()'s, with the page's session. */
export function wireCodeEntry(api, hooks) {
  $("otp-send").addEventListener("click", () => sendCode(api, hooks));
  $("otp-form").addEventListener("submit", (event) => verifyCode(api, hooks, event));
  $("otp-code").addEventListener("input", tidyCode);
}
