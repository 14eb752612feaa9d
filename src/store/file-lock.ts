/**
 * Serialises SQLite write transactions of every store this process opened on the same file.
 *
 * better-sqlite3 is synchronous: when a second connection in the same process waits on SQLite's lock, it waits
 * inside busy_timeout with the event loop blocked, so the first connection can never finish its (async)
 * transaction and both stall for the whole timeout. Waiting on a promise instead keeps the event loop running.
 * Other processes are still kept out by SQLite's own lock and busy_timeout. This is the one piece of module state
 * in the store, on purpose: it must be shared by every store instance of the process.
 */
const tails = new Map<string, Promise<void>>();

export async function withFileLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = tails.get(key) ?? Promise.resolve();
  let release!: () => void;
  const current = new Promise<void>((resolve) => {
    release = resolve;
  });
  const tail = previous.then(() => current);
  tails.set(key, tail);
  await previous;
  try {
    return await fn();
  } finally {
    release();
    if (tails.get(key) === tail) tails.delete(key);
  }
}
