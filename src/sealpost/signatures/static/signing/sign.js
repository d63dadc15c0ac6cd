/*
 * Sealpost signing page: the browser side of the ceremony.
 *
 * One script for both templates.  sign.html carries a config with a session token and runs the
 * ceremony (identify, view, consent, sign or decline); sign_error.html carries only the ids and an
 * `error` kind, and this script just tells the embedding page about it.
 *
 * Plain ES2020, no build step and nothing inline: the page's CSP is script-src 'self' and
 * style-src 'self', so every listener is attached here and every style lives in sign.css
 * (setting element.style from script is CSSOM, which CSP allows).
 *
 * The session token travels only in the X-Signing-Session header, never in a URL: URLs end up in
 * logs, history and Referer headers, and no cookie is involved, so the page also works inside a
 * third-party iframe whose browser blocks third-party cookies.
 */
"use strict";

(function () {
  const REQUEST_TIMEOUT_MS = 45000; // above the server's TSA timeout, which answers 202 instead
  const POLL_FAST_MS = 2000;
  const POLL_SLOW_MS = 15000; // a TSA outage may last hours: stop hammering after 5 minutes
  const POLL_FAST_FOR_MS = 5 * 60 * 1000;
  const RESEND_COOLDOWN_S = 30; // a code email can take a while; each send replaces the last code
  const MIN_INK = 0.03; // of the pad's width: a stray tap is not a signature
  const PAGE_PRELOAD_MARGIN = "800px 0px"; // fetch a page a little before it scrolls into view

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------------
  // Talking to the embedding page

  /** Ids go only to the tenant's declared origins, never "*": they must not leak elsewhere. */
  function notifyParent(config, type, extra) {
    if (window.parent === window) return;
    const message = Object.assign(
      { type: type, process_id: config.process_id, signer_id: config.signer_id },
      extra || {}
    );
    for (const origin of config.post_message_origins || []) {
      if (typeof origin !== "string" || origin === "*") continue;
      try {
        window.parent.postMessage(message, origin);
      } catch (err) {
        // A malformed origin in the settings throws; the others must still be told.
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The JSON API

  class ApiError extends Error {
    constructor(status, kind, message, body) {
      super(message);
      this.status = status; // 0: the request never got an answer
      this.kind = kind;
      this.body = body || {};
    }
  }

  const NETWORK_MESSAGE = "We could not reach the server. Check your connection and try again.";

  function makeApi(config) {
    const base = config.api_base.replace(/\/$/, "");

    async function send(method, path, body, expect) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      const headers = { "X-Signing-Session": config.session_token };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await fetch(base + path, {
          method: method,
          headers: headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
          credentials: "omit",
          signal: controller.signal,
        });
      } catch (err) {
        throw new ApiError(0, "network", NETWORK_MESSAGE);
      } finally {
        clearTimeout(timer);
      }
      if (!response.ok) {
        const data = await readJson(response);
        const fallback = "Something went wrong (HTTP " + response.status + "). Please try again.";
        throw new ApiError(response.status, data.error || "http", data.message || fallback, data);
      }
      if (expect === "blob") return response.blob();
      return response.status === 204 ? null : readJson(response);
    }

    return {
      get: (path) => send("GET", path),
      post: (path, body) => send("POST", path, body === undefined ? {} : body),
      blob: (path) => send("GET", path, undefined, "blob"),
    };
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (err) {
      return {};
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Status line: one aria-live region for every outcome, so screen readers hear each of them

  function say(text, kind) {
    const status = $("status");
    status.textContent = text || "";
    status.dataset.kind = kind || "info";
    // Never `hidden`: a live region must already be in the accessibility tree when its text
    // changes, or screen readers stay silent.  sign.css collapses it while it is empty.
  }

  /** Outcomes that remove the buttons: focus would fall back to <body>, so put it on the news. */
  function sayFinal(text, kind) {
    say(text, kind);
    document.body.classList.add("is-final");
    $("status").focus({ preventScroll: true });
    $("status").scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------------------------------------
  // Document pages: fetched with the session header (an <img src> cannot send one), lazily

  function renderDocuments(ctx) {
    const container = $("documents-list");
    container.textContent = "";
    const observer = pageObserver(onPagesVisible(ctx));
    for (const doc of ctx.config.documents || []) {
      const article = document.createElement("article");
      article.className = "document";
      const heading = document.createElement("h3");
      heading.className = "document-name";
      heading.textContent = doc.name;
      const list = document.createElement("ol");
      list.className = "pages";
      list.setAttribute("aria-label", doc.name);
      doc.pages.forEach((size, i) => list.appendChild(pageSlot(ctx, doc, i + 1, size)));
      article.append(heading, list);
      container.appendChild(article);
    }
    for (const slot of container.querySelectorAll(".page")) {
      if (observer) observer.observe(slot);
      else loadPage(ctx, slot);
    }
  }

  /**
   * root: document, not the implicit root: in a cross-origin iframe (the embedded case) browsers
   * ignore rootMargin on the implicit root, and pages would only load once already on screen.
   */
  function pageObserver(callback) {
    if (!("IntersectionObserver" in window)) return null;
    try {
      const options = { root: document, rootMargin: PAGE_PRELOAD_MARGIN };
      return new IntersectionObserver(callback, options);
    } catch (err) {
      // Older browsers take only an element as root.
      return new IntersectionObserver(callback, { rootMargin: PAGE_PRELOAD_MARGIN });
    }
  }

  function pageSlot(ctx, doc, number, size) {
    const slot = document.createElement("li");
    slot.className = "page is-loading";
    slot.dataset.doc = String(doc.index);
    slot.dataset.page = String(number);
    // Reserve the page's shape before its image arrives, so the scroll position does not jump.
    if (size && size.width > 0 && size.height > 0) {
      slot.style.aspectRatio = size.width + " / " + size.height;
    }
    const img = document.createElement("img");
    img.id = "page-" + doc.index + "-" + number;
    img.dataset.testid = img.id;
    img.alt = "Page " + number + " of " + doc.pages.length + " of " + doc.name;
    img.decoding = "async";
    img.hidden = true;
    const note = document.createElement("p");
    note.className = "page-note";
    note.textContent = "Loading page " + number + "…";
    slot.append(img, note);
    return slot;
  }

  function onPagesVisible(ctx) {
    return (entries, observer) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        loadPage(ctx, entry.target);
      }
    };
  }

  async function loadPage(ctx, slot) {
    const img = slot.querySelector("img");
    const note = slot.querySelector(".page-note");
    slot.className = "page is-loading";
    note.textContent = "Loading page " + slot.dataset.page + "…";
    let blob;
    try {
      const { doc, page } = slot.dataset;
      blob = await ctx.api.blob("/documents/" + doc + "/pages/" + page + ".png");
    } catch (err) {
      // Before identification the server may keep the document to itself: try again after it.
      if (err.status === 401 || err.status === 403) {
        slot.className = "page is-blocked";
        note.textContent =
          err.body.message || "You will see this page once you have confirmed it's you.";
        ctx.blockedPages.add(slot);
        return;
      }
      return pageFailed(ctx, slot);
    }
    img.onload = () => onPageShown(ctx, slot);
    img.onerror = () => pageFailed(ctx, slot); // downloaded, but not an image the browser reads
    img.src = URL.createObjectURL(blob);
  }

  function pageFailed(ctx, slot) {
    const note = slot.querySelector(".page-note");
    slot.className = "page is-failed";
    note.textContent = "Page " + slot.dataset.page + " could not be loaded. ";
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "button link";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => loadPage(ctx, slot));
    note.appendChild(retry);
  }

  function onPageShown(ctx, slot) {
    slot.className = "page";
    slot.querySelector("img").hidden = false;
    slot.querySelector(".page-note").textContent = "";
    if (!ctx.pageShown) {
      ctx.pageShown = true;
      recordView(ctx).catch(() => {}); // retried by Sign / Done, which wait for it
      updateButtons(ctx);
    }
  }

  function reloadBlockedPages(ctx) {
    const slots = Array.from(ctx.blockedPages);
    ctx.blockedPages.clear();
    slots.forEach((slot) => loadPage(ctx, slot));
  }

  /**
   * DocumentViewed evidence: once, after a page is really on screen.  Signing waits for it, so the
   * record of the viewing always comes before the record of the signature.
   */
  function recordView(ctx) {
    if (!ctx.viewed) {
      ctx.viewed = ctx.api.post("/view").catch((err) => {
        ctx.viewed = null; // let the Sign or Done button try again
        throw err;
      });
    }
    return ctx.viewed;
  }

  // ---------------------------------------------------------------------------------------------
  // Identification by a code sent by email

  async function sendCode(ctx) {
    const button = $("otp-send");
    button.disabled = true;
    try {
      const sent = await ctx.api.post("/otp");
      showCodeEntry(sent);
      say(sentMessage(sent), "info");
      $("otp-code").value = "";
      $("otp-code").focus();
      cooldown(button);
    } catch (err) {
      button.disabled = false;
      onError(ctx, err, { quiet: err.status === 429 });
    }
  }

  function sentMessage(sent) {
    const minutes = minutesUntil(sent.expires_at);
    const unit = minutes === 1 ? " minute" : " minutes";
    const validity = minutes ? " (valid " + minutes + unit + ")" : "";
    return "We sent a 6-digit code to " + sent.sent_to + validity;
  }

  /** Minutes left, or null when the client's clock is too far off to say anything sensible. */
  function minutesUntil(iso) {
    const ms = Date.parse(iso) - Date.now();
    if (!Number.isFinite(ms) || ms <= 0 || ms > 24 * 3600 * 1000) return null;
    return Math.max(1, Math.round(ms / 60000));
  }

  function showCodeEntry(sent) {
    $("otp-form").hidden = false;
    $("otp-send").textContent = "Send a new code";
    $("otp-hint").textContent = "Enter the code we sent to " + sent.sent_to + ".";
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

  async function verifyCode(ctx, event) {
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
      const result = await ctx.api.post("/otp/verify", { code: code });
      setPhase(ctx, result.status || "ready");
      say("Thank you, that's you.", "success");
      reloadBlockedPages(ctx);
      const next = ctx.role === "viewer" ? $("done") : $("consent");
      if (next) next.focus();
    } catch (err) {
      if (err.status === 422 && typeof err.body.attempts_left === "number") {
        const n = err.body.attempts_left;
        say("Wrong code: " + n + (n === 1 ? " attempt left" : " attempts left"), "error");
        input.select();
      } else {
        onError(ctx, err, { quiet: err.status === 422 });
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

  // ---------------------------------------------------------------------------------------------
  // The signature pad: strokes kept as points relative to the pad's width, so a resize (a phone
  // turned sideways) redraws them instead of wiping them, and the export does not depend on the
  // screen's pixel density.

  function makePad(canvas, onChange) {
    const strokes = [];
    let current = null;
    let rect = null;

    function lineWidth(scale) {
      return Math.max(2, scale * 0.008);
    }

    function prepare(ctx2d, scale) {
      ctx2d.lineWidth = lineWidth(scale);
      ctx2d.lineCap = "round";
      ctx2d.lineJoin = "round";
      ctx2d.strokeStyle = ctx2d.fillStyle = "#14234b"; // dark blue ink
    }

    /** Smooth curve through the midpoints; a lone point is a dot. */
    function drawStroke(ctx2d, points, scale, dx, dy) {
      const at = (p) => [p[0] * scale - dx, p[1] * scale - dy];
      if (points.length === 1) {
        const [x, y] = at(points[0]);
        ctx2d.beginPath();
        ctx2d.arc(x, y, lineWidth(scale) / 2, 0, 2 * Math.PI);
        ctx2d.fill();
        return;
      }
      ctx2d.beginPath();
      ctx2d.moveTo(...at(points[0]));
      for (let i = 1; i < points.length - 1; i++) {
        const [x, y] = at(points[i]);
        const [nx, ny] = at(points[i + 1]);
        ctx2d.quadraticCurveTo(x, y, (x + nx) / 2, (y + ny) / 2);
      }
      ctx2d.lineTo(...at(points[points.length - 1]));
      ctx2d.stroke();
    }

    function redraw() {
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      if (!width || !height) return; // in a hidden tab: redrawn when shown
      const ratio = window.devicePixelRatio || 1;
      const pixelWidth = Math.round(width * ratio);
      const pixelHeight = Math.round(height * ratio);
      if (canvas.width !== pixelWidth || canvas.height !== pixelHeight) {
        canvas.width = pixelWidth; // also wipes the canvas: the strokes are redrawn below
        canvas.height = pixelHeight;
      }
      const ctx2d = canvas.getContext("2d");
      ctx2d.setTransform(1, 0, 0, 1, 0, 0);
      ctx2d.clearRect(0, 0, canvas.width, canvas.height);
      ctx2d.setTransform(ratio, 0, 0, ratio, 0, 0);
      prepare(ctx2d, width);
      strokes.forEach((points) => drawStroke(ctx2d, points, width, 0, 0));
    }

    let frame = 0;
    function redrawSoon() {
      if (!frame) frame = requestAnimationFrame(() => ((frame = 0), redraw()));
    }

    function point(event) {
      return [(event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.width];
    }

    canvas.addEventListener("pointerdown", (event) => {
      if (current || (event.pointerType === "mouse" && event.button !== 0)) return;
      event.preventDefault();
      try {
        canvas.setPointerCapture(event.pointerId); // keep the stroke when it leaves the pad
      } catch (err) {
        // Synthetic pointers cannot be captured; drawing still works inside the pad.
      }
      rect = canvas.getBoundingClientRect();
      current = { id: event.pointerId, points: [point(event)] };
      strokes.push(current.points);
      redrawSoon();
    });

    canvas.addEventListener("pointermove", (event) => {
      if (!current || event.pointerId !== current.id) return;
      // A pen reports far more positions than frames: the coalesced ones make a smooth line.
      const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
      (events.length ? events : [event]).forEach((e) => current.points.push(point(e)));
      redrawSoon();
    });

    const end = (event) => {
      if (!current || event.pointerId !== current.id) return;
      current = null;
      onChange();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);

    if ("ResizeObserver" in window) new ResizeObserver(redraw).observe(canvas);
    else window.addEventListener("resize", redraw);

    /** Bounding box of the ink, in pad widths. */
    function bounds() {
      const all = strokes.flat();
      if (!all.length) return null;
      const xs = all.map((p) => p[0]);
      const ys = all.map((p) => p[1]);
      return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
    }

    return {
      redraw: redraw,
      clear() {
        strokes.length = 0;
        current = null;
        redraw();
        onChange();
      },
      hasInk() {
        const b = bounds();
        return !!b && Math.max(b.x1 - b.x0, b.y1 - b.y0) >= MIN_INK;
      },
      /**
       * PNG of the ink only, cropped to it with a margin, transparent background, 1000 px for
       * the pad's width whatever the screen: base64 without the "data:image/png;base64," prefix.
       */
      toBase64Png() {
        const b = bounds();
        if (!b) return null;
        const scale = 1000;
        const margin = lineWidth(scale) * 2;
        const out = document.createElement("canvas");
        out.width = Math.ceil((b.x1 - b.x0) * scale + 2 * margin);
        out.height = Math.ceil((b.y1 - b.y0) * scale + 2 * margin);
        const ctx2d = out.getContext("2d");
        prepare(ctx2d, scale);
        const dx = b.x0 * scale - margin;
        const dy = b.y0 * scale - margin;
        strokes.forEach((points) => drawStroke(ctx2d, points, scale, dx, dy));
        const url = out.toDataURL("image/png");
        return url.slice(url.indexOf(",") + 1);
      },
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Draw / Type tabs (WAI-ARIA tabs pattern: arrow keys move between tabs, Tab goes to the panel)

  function setupTabs(ctx) {
    const tabs = [$("tab-draw"), $("tab-type")];
    const select = (tab, focus) => {
      for (const t of tabs) {
        const selected = t === tab;
        t.setAttribute("aria-selected", String(selected));
        t.tabIndex = selected ? 0 : -1;
        $(t.getAttribute("aria-controls")).hidden = !selected;
      }
      ctx.mode = tab === tabs[0] ? "draw" : "type";
      if (ctx.mode === "draw") ctx.pad.redraw();
      if (focus) tab.focus();
      updateButtons(ctx);
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (event) => {
        const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: tabs.length - 1 - i };
        if (!(event.key in moves)) return;
        event.preventDefault();
        select(tabs[(i + moves[event.key] + tabs.length) % tabs.length], true);
      });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Phases: which parts of the page are shown for the signer's status

  const ACTIVE = ["identify", "ready"];

  function setPhase(ctx, status) {
    ctx.status = status;
    const active = ACTIVE.includes(status);
    const signing = active && ctx.role !== "viewer";
    $("identify-step").hidden = !(status === "identify" && ctx.identification === "email_otp");
    $("consent-step").hidden = !signing;
    $("signature-step").hidden = !signing || ctx.role === "approver";
    $("actions").hidden = !signing;
    $("view-actions").hidden = !(active && ctx.role === "viewer");
    if (!signing) closeDecline(false);
    if (ctx.mode === "draw" && signing) ctx.pad.redraw();
    updateButtons(ctx);
  }

  function identified(ctx) {
    return ctx.identification !== "email_otp" || ctx.status === "ready";
  }

  function hasSignature(ctx) {
    if (ctx.role === "approver") return true;
    if (ctx.mode === "type") return $("typed-name").value.trim().length > 0;
    return ctx.pad.hasInk();
  }

  /** The Sign button says what is still missing, rather than sitting there greyed out. */
  function updateButtons(ctx) {
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
  function applyState(ctx, state) {
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

  function finishLocked(ctx, message) {
    finishBlocked(ctx, "locked", message || LOCKED_MESSAGE);
  }

  /** Show the server's message; tell the embedder about failures it may want to react to. */
  function onError(ctx, err, options) {
    if (err.status === 423) return finishLocked(ctx, err.message);
    say(err.message, "error");
    if (!(options && options.quiet)) {
      notifyParent(ctx.config, "sealpost:error", { error: err.kind, message: err.message });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Signing, declining, acknowledging

  async function sign(ctx) {
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

  function openDecline() {
    $("decline-form").hidden = false;
    $("decline").setAttribute("aria-expanded", "true");
    $("decline-reason").focus();
  }

  function closeDecline(focusLink) {
    $("decline-form").hidden = true;
    $("decline").setAttribute("aria-expanded", "false");
    if (focusLink) $("decline").focus();
  }

  async function decline(ctx, event) {
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
  async function acknowledge(ctx) {
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

  // ---------------------------------------------------------------------------------------------
  // Start-up

  function readConfig() {
    const block = $("sealpost-config");
    try {
      return block ? JSON.parse(block.textContent) : null;
    } catch (err) {
      return null;
    }
  }

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
    $("otp-send").addEventListener("click", () => sendCode(ctx));
    $("otp-form").addEventListener("submit", (event) => verifyCode(ctx, event));
    $("otp-code").addEventListener("input", tidyCode);
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

  function startCeremony(config) {
    const signer = config.signer || {};
    const ctx = {
      config: config,
      api: makeApi(config),
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
    ctx.pad = makePad($("signature-pad"), () => updateButtons(ctx));
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

  /**
   * Spend the single-use link for a session.  The server renders the page without spending it
   * (mail scanners fetch every link of a message); a browser running this script is a person.
   * A link spent meanwhile (another tab, a scanner running scripts): reload, and the server
   * shows why it cannot be used and offers a new one.
   */
  async function openSession(config) {
    let response;
    try {
      response = await fetch(config.open_url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ link: config.link }),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      throw new ApiError(0, "network", NETWORK_MESSAGE);
    }
    const data = await readJson(response);
    if (response.status === 410) {
      window.location.reload();
      return null;
    }
    if (!response.ok || !data.session_token) {
      throw new ApiError(response.status, data.error || "http", data.message || NETWORK_MESSAGE);
    }
    return data;
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

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
