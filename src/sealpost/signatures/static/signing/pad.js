/*
 * The signature pad and the Draw / Type tabs of the signing page.
 */

import { $ } from "../access/dom.js";

const MIN_INK = 0.03; // of the pad's width: a stray tap is not a signature

// ---------------------------------------------------------------------------------------------
// The signature pad: strokes kept as points relative to the pad's width, so a resize (a phone
// turned sideways) redraws them instead of wiping them, and the export does not depend on the
// screen's pixel density.

export function makePad(canvas, onChange) {
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

export function setupTabs(ctx) {
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
    ctx.update();
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
