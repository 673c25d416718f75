// The wasmnode console: signing in, and which page the address shows.
// Everything it shows comes from the node's own API.

import { KEY, api, onUnauthorized } from "./api.js";
import { chartsView } from "./charts.js";
import { el } from "./dom.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";
import { nodeView } from "./node.js";
import { submitView } from "./submit.js";
import { failed, leave, show, status } from "./view.js";

function route() {
  leave();
  status("");
  const [where, search] = location.hash.replace(/^#\/?/, "").split("?");
  const [view, ...rest] = where.split("/");
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === (view || "node"));
  }
  if (view === "jobs" && rest.length) return jobView(decodeURIComponent(rest.join("/")));
  if (view === "jobs") return jobsView(new URLSearchParams(search || "")).catch(failed);
  if (view === "submit") return submitView().catch(failed);
  if (view === "charts") return chartsView();
  return nodeView();
}

function signIn(message) {
  leave();
  document.getElementById("nav").hidden = true;
  const form = document.getElementById("login-template").content.cloneNode(true);
  show(form);
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = document.getElementById("key").value.trim();
    sessionStorage.setItem(KEY, key);
    try {
      await api("/info");
    } catch (error) {
      if (error.status !== 401) {
        document.getElementById("login-error").textContent = error.message;
      }
      return;
    }
    start();
  });
  document.getElementById("key").focus();
}

async function start() {
  try {
    await api("/info");
  } catch (error) {
    if (error.status !== 401) show(el("p", { class: "error" }, `The node did not answer: ${error.message}`));
    return;
  }
  document.getElementById("nav").hidden = false;
  route();
}

onUnauthorized(signIn);
document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.hash = "";
  signIn("Signed out.");
});
window.addEventListener("hashchange", () => {
  if (!document.getElementById("nav").hidden) route();
});
start();
