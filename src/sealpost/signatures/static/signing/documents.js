/*
 * The documents of the signing page: page images fetched with the session header (an <img src>
 * cannot send one), lazily, and the DocumentViewed record once a page is really on screen.
 */

import { $ } from "../access/dom.js";

const PAGE_PRELOAD_MARGIN = "800px 0px"; // fetch a page a little before it scrolls into view

// ---------------------------------------------------------------------------------------------
// Document pages: fetched with the session header (an <img src> cannot send one), lazily

export function renderDocuments(ctx) {
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
        err.body.detail || "You will see this page once you have confirmed it's you.";
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
    ctx.update();
  }
}

export function reloadBlockedPages(ctx) {
  const slots = Array.from(ctx.blockedPages);
  ctx.blockedPages.clear();
  slots.forEach((slot) => loadPage(ctx, slot));
}

/**
 * DocumentViewed evidence: once, after a page is really on screen.  Signing waits for it, so the
 * record of the viewing always comes before the record of the signature.
 */
export function recordView(ctx) {
  if (!ctx.viewed) {
    ctx.viewed = ctx.api.post("/view").catch((err) => {
      ctx.viewed = null; // let the Sign or Done button try again
      throw err;
    });
  }
  return ctx.viewed;
}
