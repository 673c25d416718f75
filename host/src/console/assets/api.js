// Talking to the node: every request carries the key the operator typed
// in (kept in this tab's session storage); a 401 hands over to the
// sign-in form.

import { el } from "./dom.js";

export const KEY = "wasmnode.api-key";

let unauthorized = () => {};

/** What to do when the node refuses the key (show the sign-in form). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A request to the node with the key, or the sign-in form on a 401. */
export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.ok) return response;
  let error = {};
  try {
    error = (await response.json()).error || {};
  } catch (_) {
    // A body that is not the API's error document: the status says enough.
  }
  const failure = new ApiError(
    response.status,
    error.code || `HTTP_${response.status}`,
    error.message || response.statusText,
  );
  if (response.status === 401) unauthorized(key ? "That key was refused." : "");
  throw failure;
}

export const getJson = async (path) => (await api(path)).json();

/** Follows a Server-Sent Events stream read with the key (EventSource cannot send one). */
export async function follow(path, signal, onEvent) {
  const response = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

/** Saves a response body as a file (the key rules out a plain link). */
export async function download(path, name) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
