/** Where the CLI writes. `main` defaults to the process streams; tests pass their own to capture output. */
export interface TextSink {
  write(chunk: string): unknown;
}

export interface CliIo {
  stdout: TextSink;
  stderr: TextSink;
  env: Record<string, string | undefined>;
  cwd: string;
  /** Aborting stops a running `serve` / `quickstart` like SIGTERM does (for in-process callers). */
  signal?: AbortSignal;
  /** Whether SIGINT/SIGTERM stop `serve`; false for in-process tests that must not touch process signals. */
  handleSignals: boolean;
}

export function defaultIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    handleSignals: true,
  };
}

export function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
}

export function printLine(io: CliIo, line = ""): void {
  io.stdout.write(`${line}\n`);
}

/** BigInt has no JSON form; model outputs are converted before they get here, this is the last guard. */
function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? Number(value) : value;
}

/** A plain left-aligned text table; empty cells print as `-`. */
export function formatTable(headers: string[], rows: string[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === "" ? "-" : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatKv(record: Record<string, string | number>): string {
  const entries = Object.entries(record);
  return entries.length === 0 ? "" : entries.map(([k, v]) => `${k}=${v}`).join(", ");
}
