import type pg from "pg";
import type { Logger } from "../core/index.js";

/** The channel the `0009_registry_notify` trigger notifies on every registry write (payload: the new revision). */
export const REGISTRY_CHANNEL = "mlship_registry";
/** `application_name` of the listening connection. */
export const LISTENER_APPLICATION_NAME = "mlship-registry-listener";

export interface ChangeListenerOptions {
  /** PostgreSQL connection string (the metadata store's). */
  url: string;
  /** Where a lost or regained connection is reported (once per outage). */
  logger?: Pick<Logger, "warn" | "info">;
  /** Store location with the password redacted, for log lines. */
  location: string;
  /** First reconnect delay, doubled per failure up to `maxBackoffMs`. Default 100 ms. */
  minBackoffMs?: number;
  /** Default 5000 ms. */
  maxBackoffMs?: number;
}

/**
 * One dedicated PostgreSQL connection that `LISTEN`s on `mlship_registry` and calls every subscriber when a registry
 * write commits anywhere (any process, any replica). When the connection drops it reconnects with backoff; while
 * it is down subscribers hear nothing and the change-token poll is what notices changes. After every (re)connect the
 * subscribers are called once, since changes made while it was down were not notified.
 */
export class RegistryChangeListener {
  readonly #options: ChangeListenerOptions;
  readonly #listeners = new Set<() => void>();
  #client: pg.Client | undefined;
  #pid: number | null = null;
  #closed = false;
  #backoffMs: number;
  #timer: NodeJS.Timeout | undefined;
  #down = false;
  #connecting: Promise<void> | undefined;

  constructor(options: ChangeListenerOptions) {
    this.#options = options;
    this.#backoffMs = options.minBackoffMs ?? 100;
  }

  /** The backend process id of the listening connection, or null while it is not connected. */
  get pid(): number | null {
    return this.#pid;
  }

  /** Subscribes; the first subscription opens the connection. Returns the unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    if (this.#client === undefined && this.#timer === undefined && !this.#closed) void this.#connect();
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once a connection is listening (for tests and start-up); never rejects. */
  async ready(): Promise<void> {
    while (!this.#closed && this.#pid === null) {
      await (this.#connecting ?? new Promise((resolve) => setTimeout(resolve, 20)));
    }
  }

  #emit(): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch {
        // A subscriber's failure must not stop the others or the connection.
      }
    }
  }

  #connect(): Promise<void> {
    this.#connecting ??= (async () => {
      // Loaded on the first connection (the store has normally loaded it already): importing this module must not
      // pull the PostgreSQL driver into processes on SQLite.
      const { default: pg } = await import("pg");
      const client = new pg.Client({
        connectionString: this.#options.url,
        connectionTimeoutMillis: 5000,
        // Named, so an operator (or a test) can find it in pg_stat_activity.
        application_name: LISTENER_APPLICATION_NAME,
      });
      // Without an 'error' listener a dropped connection would end the process.
      client.on("error", (err) => this.#lost(client, err));
      client.on("end", () => this.#lost(client));
      client.on("notification", (message) => {
        if (message.channel === REGISTRY_CHANNEL) this.#emit();
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${REGISTRY_CHANNEL}`);
        const row = await client.query<{ pid: number }>("select pg_backend_pid() as pid");
        if (this.#closed) {
          await client.end().catch(() => undefined);
          return;
        }
        this.#client = client;
        this.#pid = row.rows[0]?.pid ?? null;
        this.#backoffMs = this.#options.minBackoffMs ?? 100;
        if (this.#down) {
          this.#down = false;
          this.#options.logger?.info({ store: this.#options.location }, "registry change listener reconnected");
        }
        // Changes committed while nobody listened were not notified: let the subscribers re-check once.
        this.#emit();
      } catch (err) {
        this.#lost(client, err);
      }
    })().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #lost(client: pg.Client, err?: unknown): void {
    if (this.#client !== undefined && this.#client !== client) return;
    this.#client = undefined;
    this.#pid = null;
    client.removeAllListeners("notification");
    void client.end().catch(() => undefined);
    if (this.#closed || this.#timer !== undefined) return;
    if (!this.#down) {
      this.#down = true;
      this.#options.logger?.warn(
        { err, store: this.#options.location },
        "registry change listener lost its connection; alias changes are picked up by the change-token poll until it reconnects",
      );
    }
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#options.maxBackoffMs ?? 5000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#closed) void this.#connect();
    }, delay);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#connecting;
    const client = this.#client;
    this.#client = undefined;
    this.#pid = null;
    await client?.end().catch(() => undefined);
  }
}
