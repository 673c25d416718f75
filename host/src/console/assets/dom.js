// Building the page: elements, lists of facts, times and states. Text from
// the node always goes in as text, never as markup.

/** An element with attributes (`on…` ones are listeners) and children. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  fill(node, ...children);
  return node;
}

/** Replaces what `node` holds with `children` (nested lists flattened, nulls left out). */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

export function facts(pairs) {
  return el(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, value]) => value !== undefined && value !== null && value !== "")
      .map(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]),
  );
}

export const mb = (value) => (value === null || value === undefined ? null : `${value} MiB`);

export function when(timestamp) {
  return timestamp ? new Date(timestamp).toLocaleString() : "";
}

export function took(job) {
  if (!job.started_at) return "";
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  const ms = end - Date.parse(job.started_at);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function stateOf(state) {
  return el("span", { class: `state state-${state}` }, state);
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}
