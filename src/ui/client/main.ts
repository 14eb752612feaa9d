/** The dashboard: header and navigation, a hash router, one page at a time. */

import "./style.css";
import { getToken, loadServer, server } from "./api.js";
import { openTokenDialog } from "./dialogs.js";
import { h, replace } from "./dom.js";
import { duration } from "./format.js";
import { createContext, errorBox, type Page } from "./page.js";
import { alertsPage } from "./pages/alerts.js";
import { batchPage } from "./pages/batch.js";
import { driftPage } from "./pages/drift.js";
import { modelPage } from "./pages/model.js";
import { modelsPage } from "./pages/models.js";
import { qualityPage } from "./pages/quality.js";
import { rolloutPage, rolloutsPage } from "./pages/rollouts.js";
import { streamsPage } from "./pages/streams.js";
import { trafficPage } from "./pages/traffic.js";
import { versionPage } from "./pages/version.js";

interface Route {
  testid: string;
  nav: string;
  page: Page;
}

/** `#/models/a/versions/2?size=1h` -> the page and its decoded parameters. */
function route(hash: string): { route: Route; params: string[]; query: URLSearchParams } | null {
  const [path = "", search = ""] = hash.replace(/^#/, "").split("?");
  const parts = path
    .split("/")
    .filter((p) => p !== "")
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  const query = new URLSearchParams(search);
  const [head = "models", ...rest] = parts;
  const at = (testid: string, nav: string, page: Page): { route: Route; params: string[]; query: URLSearchParams } => ({ route: { testid, nav, page }, params: rest, query });
  switch (head) {
    case "models":
      if (rest.length === 0) return at("page-models", "models", modelsPage);
      if (rest.length === 1) return at("page-model", "models", modelPage);
      if (rest.length === 3 && rest[1] === "versions") return at("page-version", "models", versionPage);
      return null;
    case "traffic":
      return at("page-traffic", "traffic", trafficPage);
    case "drift":
      return rest.length === 2 ? at("page-drift", "models", driftPage) : null;
    case "quality":
      return rest.length === 1 ? at("page-quality", "models", qualityPage) : null;
    case "rollouts":
      return rest.length === 0 ? at("page-rollouts", "rollouts", rolloutsPage) : rest.length === 1 ? at("page-rollout", "rollouts", rolloutPage) : null;
    case "batch":
      return at("page-batch", "batch", batchPage);
    case "streams":
      return at("page-streams", "streams", streamsPage);
    case "alerts":
      return at("page-alerts", "alerts", alertsPage);
    default:
      return null;
  }
}

const NAV: [string, string, string, keyof NonNullable<ReturnType<typeof server>>["features"] | null][] = [
  ["models", "Models", "#/models", null],
  ["traffic", "Traffic", "#/traffic", null],
  ["rollouts", "Rollouts", "#/rollouts", "rollouts"],
  ["batch", "Batch", "#/batch", "batch"],
  ["streams", "Streams", "#/streams", "streams"],
  ["alerts", "Alerts", "#/alerts", null],
];

const tokenButton = h("button", { type: "button", class: "token", "data-testid": "token-button" });
const serverLine = h("span", { class: "server", "data-testid": "server-version" }, "mlship");
const navLinks = new Map(NAV.map(([key, label, href]) => [key, h("a", { href, "data-testid": `nav-${key}` }, label)]));
const main = h("main", { id: "main" });

function renderToken(): void {
  const info = server();
  const stored = getToken() !== null;
  replace(tokenButton, stored ? "Admin token: set" : "Admin token");
  tokenButton.title =
    info !== null && !info.auth.adminToken
      ? "This server has no admin token: actions are off"
      : stored
        ? "An admin token is stored for this tab: actions are sent with it"
        : "Reads are open; set the admin token to promote, abort, roll back or start rollouts";
  tokenButton.classList.toggle("set", stored);
}

function renderServer(): void {
  const info = server();
  if (info === null) {
    replace(serverLine, "server info unavailable");
    return;
  }
  replace(serverLine, `mlship ${info.version}`);
  serverLine.title = `up ${duration(info.uptimeSeconds)}, started ${new Date(info.startedAt).toLocaleString()}${info.defaultModel ? `; /invocations serves ${info.defaultModel}` : ""}`;
  for (const [key, , , feature] of NAV) {
    const link = navLinks.get(key);
    if (link === undefined || feature === null) continue;
    const off = !info.features[feature];
    link.classList.toggle("off", off);
    link.title = off ? "not wired in this server" : "";
  }
}

let current: AbortController | null = null;

function show(): void {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const found = route(location.hash || "#/models");
  for (const [key, link] of navLinks) {
    if (found?.route.nav === key) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (found === null) {
    const root = h("div", { class: "page", "data-testid": "page-not-found", "data-state": "error" }, errorBox(new Error(`No page at ${location.hash}.`)));
    replace(main, root);
    return;
  }
  const root = h("div", { class: "page", "data-testid": found.route.testid });
  replace(main, root);
  const ctx = createContext(root, found.params, found.query, controller.signal);
  try {
    const result = found.route.page(ctx);
    if (result instanceof Promise) result.catch((error: unknown) => ctx.fail(error));
  } catch (error) {
    ctx.fail(error);
  }
  window.scrollTo(0, 0);
}

async function start(): Promise<void> {
  tokenButton.addEventListener("click", () => openTokenDialog(() => {
    renderToken();
    // Action buttons read the token state when drawn.
    show();
  }));
  document.body.append(
    h(
      "header",
      null,
      h("a", { class: "brand", href: "#/models" }, "mlship"),
      h("nav", { "aria-label": "Pages" }, [...navLinks.values()]),
      h("span", { class: "spacer" }),
      serverLine,
      tokenButton,
    ),
    main,
  );
  renderToken();
  await loadServer();
  renderServer();
  renderToken();
  window.addEventListener("hashchange", show);
  show();
}

void start();
