/*
 * Talking to the page that embeds this one (an integrator's iframe): postMessage events.
 */

export function notifyParent(config, type, extra) {
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
