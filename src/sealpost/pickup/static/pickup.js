/*
 * The registered-pickup page: open the session (spending the single-use link from script,
 * never on GET: mail scanners fetch links), identify (a code by email or SMS, or the answer
 * to the sender's question), accept or reject in consent mode, then read and download.
 * Strings in English and Spanish; the server picks from Accept-Language, the page switches.
 */

import { makeApi, openSession } from "/static/access/api.js";

const TEXT = {
  en: {
    title: "Certified message",
    identify: "Identify yourself",
    send_code: "Send me a code",
    answer_label: "Code or answer",
    verify: "Continue",
    decide: "Accept or reject",
    decide_text: "Once you accept, the message is shown to you. Rejecting it is recorded too.",
    accept: "Accept and open",
    reject: "Reject",
    reason_label: "Reason (optional)",
    attachments: "Attachments",
    download_eml: "Download the original (.eml)",
    code_sent: "A code was sent to ",
    identified: "Identified.",
    from: "From: ",
    waiting_from: "A certified message from ",
    rejected: "You rejected this message. This was recorded.",
    expired: "This message is no longer available: the pickup period is over.",
    accepted_elsewhere: "This message was already accepted.",
    ask_code: "Ask for a code, then type it here.",
    downloaded: "Downloaded: ",
  },
  es: {
    title: "Comunicación certificada",
    identify: "Identifíquese",
    send_code: "Enviarme un código",
    answer_label: "Código o respuesta",
    verify: "Continuar",
    decide: "Aceptar o rechazar",
    decide_text: "Al aceptar, se le mostrará el mensaje. El rechazo también queda registrado.",
    accept: "Aceptar y abrir",
    reject: "Rechazar",
    reason_label: "Motivo (opcional)",
    attachments: "Adjuntos",
    download_eml: "Descargar el original (.eml)",
    code_sent: "Se ha enviado un código a ",
    identified: "Identificación correcta.",
    from: "De: ",
    waiting_from: "Una comunicación certificada de ",
    rejected: "Ha rechazado esta comunicación. Queda registrado.",
    expired: "Esta comunicación ya no está disponible: el plazo ha terminado.",
    accepted_elsewhere: "Esta comunicación ya fue aceptada.",
    ask_code: "Pida un código y escríbalo aquí.",
    downloaded: "Descargado: ",
  },
};

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("config").textContent);
let lang = config.lang in TEXT ? config.lang : "en";
let api = null;
let view = null;

function t(key) {
  return TEXT[lang][key] || TEXT.en[key] || key;
}

function say(text, kind) {
  const line = $("status");
  line.textContent = text;
  line.dataset.kind = kind || "info";
}

function translate() {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  if (view) render(view);
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function render(state) {
  view = state;
  const sender = state.sender;
  show("sender", Boolean(sender) && !state.handed_over);
  if (sender) $("sender").textContent = t("waiting_from") + sender;
  const theirs = state.state === "accepted" || state.state === "handed_over";
  const open = state.state === "notified" || (theirs && !state.identified);
  const needsId = open && !state.identified;
  show("identify", needsId);
  if (needsId) {
    const challenge = state.identification === "challenge";
    show("question", challenge);
    if (challenge) $("question").textContent = state.question || "";
    show("code-send", !challenge);
  }
  show("decide", state.identified && state.consent === "consent" && state.state === "notified");
  if (state.state === "rejected") say(t("rejected"), "info");
  if (state.state === "expired") say(t("expired"), "error");
  const ready =
    state.identified &&
    (state.state === "accepted" || state.state === "handed_over" ||
      (state.consent === "basic" && state.state === "notified"));
  if (ready && !$("content").dataset.loaded) loadContent();
}

// The sender's HTML, already reduced to structure and words by the server (content.py), in
// an iframe sandboxed without scripts, forms or same-origin, under its own "default-src 'none'"
// on top of this page's policy: nothing in it runs or loads, even past a sanitizer flaw.
const FRAME_HEAD =
  '<!doctype html><html><head><meta charset="utf-8">' +
  "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">" +
  '<meta name="referrer" content="no-referrer"><base target="_blank"></head><body>';

function showHtml(html) {
  const frame = $("html");
  if (html) {
    frame.srcdoc = FRAME_HEAD + html + "</body></html>";
  } else {
    frame.removeAttribute("srcdoc");
  }
  show("html", Boolean(html));
  show("text", !html);
}

async function loadContent() {
  $("content").dataset.loaded = "1";
  try {
    const message = await api.get("/content");
    $("subject").textContent = message.subject || "";
    $("from").textContent = t("from") + message.sender;
    $("text").textContent = message.text;
    showHtml(message.html);
    const list = $("files");
    list.replaceChildren();
    for (const file of message.attachments) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = file.filename + " (" + file.size + " B)";
      button.dataset.testid = "download-" + file.index;
      button.setAttribute("data-testid", "download-" + file.index);
      button.addEventListener("click", () => download(String(file.index), file.filename));
      item.append(button);
      list.append(item);
    }
    show("content", true);
    show("sender", false);
  } catch (err) {
    $("content").dataset.loaded = "";
    say(err.message, "error");
  }
}

async function download(part, filename) {
  try {
    const blob = await api.blob("/download/" + part);
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say(t("downloaded") + filename, "info");
  } catch (err) {
    say(err.message, "error");
  }
}

async function guarded(action) {
  try {
    const state = await action();
    if (state) render(state);
  } catch (err) {
    say(err.message, "error");
    if (err.status === 423 || err.status === 409) {
      try {
        render(await api.get("/state"));
      } catch (ignored) {
        /* the status line already says what went wrong */
      }
    }
  }
}

function wire() {
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => {
      lang = button.dataset.lang;
      translate();
    });
  }
  $("code-send").addEventListener("click", () =>
    guarded(async () => {
      const sent = await api.post("/code");
      say(t("code_sent") + sent.sent_to, "info");
      $("answer").focus();
      return null;
    }),
  );
  $("answer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      const state = await api.post("/identify", { answer: $("answer").value });
      say(t("identified"), "info");
      return state;
    });
  });
  $("accept").addEventListener("click", () => guarded(() => api.post("/accept")));
  $("reject").addEventListener("click", () =>
    guarded(() => api.post("/reject", { reason: $("reason").value })),
  );
  $("eml").addEventListener("click", () => download("eml", "message.eml"));
}

/*
 * The page session is kept in the tab's sessionStorage (never in the URL, never a cookie): the
 * link is single-use, so without it a reload — or a phone browser dropping the tab — would
 * leave a recipient who already accepted with no way back to the content.  sessionStorage is
 * the tab's own and ends with it.
 */
const STORE_KEY = "sealpost.pickup.session:" + config.link;

function remember(token) {
  try {
    window.sessionStorage.setItem(STORE_KEY, token);
  } catch (err) {
    // storage off (private mode): the page still works, only a reload loses it
  }
}

function recalled() {
  try {
    return window.sessionStorage.getItem(STORE_KEY);
  } catch (err) {
    return null;
  }
}

function forget() {
  try {
    window.sessionStorage.removeItem(STORE_KEY);
  } catch (err) {
    // nothing kept
  }
}

async function resume() {
  const token = recalled();
  if (token) {
    config.session_token = token;
    api = makeApi(config, config.session_header);
    try {
      render(await api.get("/state"));
      return;
    } catch (err) {
      forget();
    }
  }
  say(config.gone, "error");
}

async function start() {
  wire();
  translate();
  try {
    if (config.resume) {
      await resume();
      return;
    }
    const opened = await openSession(config);
    if (!opened) return;
    config.session_token = opened.session_token;
    remember(opened.session_token);
    api = makeApi(config, config.session_header);
    render(opened);
  } catch (err) {
    say(err.message, "error");
  }
}

start();
