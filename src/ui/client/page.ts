/** What every page gets: its root, a way to say it is ready or failed, polling that stops when the page is left. */

import { ApiError, describeError } from "./api.js";
import { flushCharts } from "./charts.js";
import { h, replace, type Child } from "./dom.js";

export interface PageContext {
  /** The page root (`data-testid="page-..."`, `data-state`). */
  root: HTMLElement;
  /** Messages of actions (`action-result`, `action-error`); kept when the content is rendered again. */
  flash: HTMLElement;
  /** Where the page renders its data. */
  body: HTMLElement;
  /** Path parts after the page name, decoded. */
  params: string[];
  query: URLSearchParams;
  /** Aborted when the page is left. */
  signal: AbortSignal;
  /** The first data is on screen (charts drawn): `data-state="ready"`. */
  ready(): void;
  /** The page could not load: `data-state="error"` with the message in `page-error`. */
  fail(error: unknown): void;
  /**
   * Calls `tick` now and then every `intervalMs` while the page is shown and the tab visible: never two at once, the
   * next one `intervalMs` after the previous one ended.
   */
  poll(tick: (signal: AbortSignal) => Promise<void>, intervalMs: number): void;
  /** Calls `load` once now, and again on `reload()`. */
  load(load: (signal: AbortSignal) => Promise<void>): void;
  /** Runs the page's loads and polls again now (after an action). */
  reload(): void;
}

export type Page = (ctx: PageContext) => Promise<void> | void;

export function createContext(root: HTMLElement, params: string[], query: URLSearchParams, signal: AbortSignal): PageContext {
  const runners: (() => void)[] = [];
  const flash = h("div", { class: "flash", "aria-live": "polite" });
  const body = h("div", { class: "page-body" });
  root.append(flash, body);
  root.dataset.state = "loading";
  const ctx: PageContext = {
    root,
    flash,
    body,
    params,
    query,
    signal,
    ready() {
      if (signal.aborted) return;
      root.querySelector('[data-testid="page-error"]')?.remove();
      flushCharts();
      root.dataset.state = "ready";
    },
    fail(error) {
      if (signal.aborted) return;
      root.dataset.state = "error";
      root.querySelector('[data-testid="page-error"]')?.remove();
      body.prepend(errorBox(error));
    },
    poll(tick, intervalMs) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let running = false;
      let controller: AbortController | undefined;
      const schedule = (): void => {
        if (intervalMs <= 0 || signal.aborted || document.hidden) return;
        clearTimeout(timer);
        timer = setTimeout(run, intervalMs);
      };
      const run = (): void => {
        if (running || signal.aborted) return;
        running = true;
        controller = new AbortController();
        tick(controller.signal)
          .catch((error: unknown) => {
            if (!signal.aborted && !(error instanceof DOMException && error.name === "AbortError")) ctx.fail(error);
          })
          .finally(() => {
            running = false;
            schedule();
          });
      };
      const onVisibility = (): void => {
        if (document.hidden) clearTimeout(timer);
        else if (!running && intervalMs > 0) run();
      };
      if (intervalMs > 0) document.addEventListener("visibilitychange", onVisibility);
      runners.push(() => {
        clearTimeout(timer);
        run();
      });
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          controller?.abort();
          document.removeEventListener("visibilitychange", onVisibility);
        },
        { once: true },
      );
      run();
    },
    load(load) {
      ctx.poll(load, 0);
    },
    reload() {
      for (const runner of runners) runner();
    },
  };
  return ctx;
}

export function errorBox(error: unknown): HTMLElement {
  const notFound = error instanceof ApiError && error.missingRoute;
  return h("div", { class: "error-box", role: "alert", "data-testid": "page-error" }, h("strong", null, notFound ? "Not available: " : "Error: "), describeError(error));
}

/** A titled section. */
export function section(title: Child, ...children: Child[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", null, title), ...children);
}

export interface Column<T> {
  label: string;
  cell: (row: T) => Child;
  /** Right-aligned numbers. */
  numeric?: boolean;
  title?: string;
}

/** A real `<table>` with a header row; `rowAttrs` gives each row its attributes (data-testid, class). */
export function table<T>(columns: Column<T>[], rows: T[], options: { caption?: string; empty?: string; rowAttrs?: (row: T) => Record<string, string> } = {}): HTMLElement {
  if (rows.length === 0) return h("p", { class: "muted empty" }, options.empty ?? "Nothing yet.");
  const head = h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : null, title: c.title ?? null }, c.label)));
  const body = rows.map((row) => {
    const attrs = options.rowAttrs?.(row) ?? {};
    return h("tr", attrs, columns.map((c) => h("td", { class: c.numeric ? "num" : null }, c.cell(row))));
  });
  return h(
    "div",
    { class: "table-wrap" },
    h("table", null, options.caption ? h("caption", null, options.caption) : null, h("thead", null, head), h("tbody", null, body)),
  );
}

export type Tone = "ok" | "bad" | "warn" | "info" | "muted";

const SYMBOL: Record<Tone, string> = { ok: "✓", bad: "✗", warn: "!", info: "•", muted: "·" };

/** A state label: color plus a symbol and the word, so it reads without color too. */
export function badge(text: string, tone: Tone, title?: string): HTMLElement {
  return h("span", { class: `badge ${tone}`, title: title ?? null }, h("span", { "aria-hidden": "true" }, SYMBOL[tone]), ` ${text}`);
}

/** A badge whose text is only the word (where the word is the value, e.g. a drift kind). */
export function wordBadge(text: string, tone: Tone, title?: string): HTMLElement {
  return h("span", { class: `badge ${tone}`, title: title ?? null }, text);
}

/** A definition list of label/value pairs. */
export function facts(pairs: [string, Child][]): HTMLElement {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

export function pageTitle(...children: Child[]): HTMLElement {
  return h("h1", null, ...children);
}

export function note(text: Child): HTMLElement {
  return h("p", { class: "muted" }, text);
}

/** A sub-load that failed while the rest of the page works (e.g. a route this server does not have). */
export function inlineError(error: unknown): HTMLElement {
  return h("p", { class: "inline-error", role: "status" }, describeError(error));
}

export function setBody(ctx: PageContext, ...children: Child[]): void {
  replace(ctx.body, ...children);
}
