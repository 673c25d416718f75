// The life of one view (page) of the console: what to stop when the
// operator leaves it (timers, open streams), the status line, errors.

import { ApiError } from "./api.js";
import { fill } from "./dom.js";

let leaving = [];

export let shown = 0;

/** Stops what the current view left running; the next view starts. */
export function leave() {
  for (const fn of leaving) fn();
  leaving = [];
  shown += 1;
}

/** Runs `fn` when the view changes (timers, open streams). */
export function onLeave(fn) {
  leaving.push(fn);
}

export function show(...children) {
  fill(document.getElementById("main"), ...children);
}

export function status(text) {
  document.getElementById("status").textContent = text;
}

export function failed(error) {
  if (error instanceof ApiError && error.status === 401) return;
  if (error.name === "AbortError") return;
  status(`${error.code || "ERROR"}: ${error.message}`);
}

/** Calls `fn` now and every `ms` while the view stays. */
export function every(ms, fn) {
  let stopped = false;
  let timer;
  const tick = async () => {
    try {
      await fn();
    } catch (error) {
      failed(error);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
  tick();
}
