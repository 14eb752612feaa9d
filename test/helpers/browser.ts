// Debian's headless Chromium driven by playwright-core (no downloaded browser): one browser per test file, a fresh
// profile folder for it, and a record of everything that went wrong in its pages (console errors, uncaught
// exceptions, failed requests, HTTP errors) so a test can assert there was none it did not expect.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
const ENSURE_SCRIPT = fileURLToPath(new URL("../../scripts/ensure-chromium.sh", import.meta.url));

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Installs Chromium through `scripts/ensure-chromium.sh` when it is missing (a no-op when it is there). */
export function ensureChromium(): void {
  execFileSync("sh", [ENSURE_SCRIPT], { stdio: ["ignore", "inherit", "inherit"], timeout: 600_000 });
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing after scripts/ensure-chromium.sh`);
}

/** One thing that went wrong in a page. */
export interface PageProblem {
  kind: "console" | "pageerror" | "requestfailed" | "http";
  text: string;
  url?: string;
  status?: number;
}

export interface BrowserSession {
  /** The browser behind the context (playwright may give none for a persistent context; close through `close()`). */
  browser: Browser | null;
  context: BrowserContext;
  /** Everything that went wrong in any page of the context so far, in order. */
  problems: PageProblem[];
  newPage(): Promise<Page>;
  /** Closes the context and the browser and removes the profile folder. Idempotent. */
  close(): Promise<void>;
}

/** Launches headless Chromium with a fresh user-data folder and a context that records problems of its pages. */
export async function launchBrowser(options: { viewport?: { width: number; height: number } } = {}): Promise<BrowserSession> {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-chromium-"));
  // A persistent context is the only way to give Chromium its own user-data folder through playwright; it also
  // stands for the browser here (closing it closes the browser).
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: options.viewport ?? { width: 1280, height: 900 },
    deviceScaleFactor: 1,
  });
  const browser = context.browser();
  const problems: PageProblem[] = [];
  const watch = (page: Page): void => {
    page.on("console", (message) => {
      if (message.type() === "error") problems.push({ kind: "console", text: message.text(), url: message.location().url });
    });
    page.on("pageerror", (error) => problems.push({ kind: "pageerror", text: error.stack ?? error.message }));
    page.on("requestfailed", (request) => {
      problems.push({ kind: "requestfailed", text: `${request.method()} ${request.url()}: ${request.failure()?.errorText ?? "failed"}`, url: request.url() });
    });
    page.on("response", (response) => {
      if (response.status() >= 400) {
        problems.push({ kind: "http", text: `${response.request().method()} ${response.url()}: HTTP ${response.status()}`, url: response.url(), status: response.status() });
      }
    });
  };
  context.pages().forEach(watch);
  context.on("page", watch);
  let closing: Promise<void> | undefined;
  return {
    browser,
    context,
    problems,
    newPage: () => context.newPage(),
    close() {
      closing ??= (async () => {
        await context.close().catch(() => undefined);
        fs.rmSync(userDataDir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
