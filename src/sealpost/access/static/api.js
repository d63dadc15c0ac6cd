/*
 * A page's JSON API, with its session.
 *
 * The session token travels only in a header (the page names it), never in a URL: URLs end up in
 * logs, history and Referer headers, and no cookie is involved, so the page also works inside a
 * third-party iframe whose browser blocks third-party cookies.
 *
 * The page is rendered without spending its single-use link (mail scanners fetch every link of a
 * message); openSession() spends it from script, for the session token: a browser running this
 * script is a person.
 */

const REQUEST_TIMEOUT_MS = 45000; // above the server's TSA timeout, which answers 202 instead

export class ApiError extends Error {
  constructor(status, kind, message, body) {
    super(message);
    this.status = status; // 0: the request never got an answer
    this.kind = kind;
    this.body = body || {};
  }
}

export const NETWORK_MESSAGE = "We could not reach the server. Check your connection and try again.";

const PROBLEM_TYPE_PREFIX = "urn:sealpost:problem:";

/**
 * An error answer is an RFC 9457 problem (application/problem+json): its kind is the code of
 * its `type` (or, for a link that cannot be used, the more precise `kind`: link_used,
 * link_expired...), its words the `detail`.
 */
export function problemError(status, data, fallback) {
  const type = typeof data.type === "string" ? data.type : "";
  const code = type.startsWith(PROBLEM_TYPE_PREFIX) ? type.slice(PROBLEM_TYPE_PREFIX.length) : "http";
  const kind = typeof data.kind === "string" ? data.kind : code;
  const message = typeof data.detail === "string" && data.detail ? data.detail : fallback;
  return new ApiError(status, kind, message, data);
}

export function makeApi(config, sessionHeader) {
  const base = config.api_base.replace(/\/$/, "");

  async function send(method, path, body, expect) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    const headers = { [sessionHeader]: config.session_token };
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
      throw problemError(response.status, data, fallback);
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

export async function readJson(response) {
  try {
    return await response.json();
  } catch (err) {
    return {};
  }
}


/**
 * Spend the single-use link for a session (config.open_url, config.link).  The server renders the page without spending it
 * (mail scanners fetch every link of a message); a browser running this script is a person.
 * A link spent meanwhile (another tab, a scanner running scripts): reload, and the server
 * shows why it cannot be used and offers a new one.
 */
export async function openSession(config) {
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
    throw problemError(response.status, data, NETWORK_MESSAGE);
  }
  return data;
}
