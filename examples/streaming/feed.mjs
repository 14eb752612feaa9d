#!/usr/bin/env node
/**
 * Input for the streaming example: rows like the breast-cancer model's input example (each value jittered by up to
 * ±10%), with an `id` and an event time `ts`.
 *
 * ```sh
 * node examples/streaming/feed.mjs files --count 300 --files 3     # CSV files into examples/streaming/incoming/
 * node examples/streaming/feed.mjs nats --count 10000              # JSON messages to NATS subject scoring.in
 * ```
 *
 * Files are written under a `.` name and renamed into place, as a folder source's writers must. Messages go to
 * JetStream (the stream that captures the subject must exist: `mlship stream run` with stream-nats.yaml creates it).
 */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const example = JSON.parse(fs.readFileSync(path.join(HERE, "..", "models", "breast-cancer", "input_example.json"), "utf8"));
const { columns, data } = example.dataframe_split;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    count: { type: "string", default: "300" },
    files: { type: "string", default: "1" },
    folder: { type: "string", default: path.join(HERE, "incoming") },
    servers: { type: "string", default: "nats://127.0.0.1:4222" },
    subject: { type: "string", default: "scoring.in" },
    prefix: { type: "string", default: `r${Date.now().toString(36)}-` },
  },
});
const count = Number(values.count);

function row(i) {
  const base = data[i % data.length];
  const record = { id: `${values.prefix}${i}`, ts: new Date().toISOString() };
  columns.forEach((c, j) => (record[c] = Number((base[j] * (0.9 + Math.random() * 0.2)).toPrecision(5))));
  return record;
}

const quote = (text) => (/[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);

if (positionals[0] === "files") {
  const files = Math.max(1, Number(values.files));
  fs.mkdirSync(values.folder, { recursive: true });
  const per = Math.ceil(count / files);
  for (let f = 0; f < files; f++) {
    const rows = [];
    for (let i = f * per; i < Math.min(count, (f + 1) * per); i++) rows.push(row(i));
    const header = ["id", "ts", ...columns];
    const text = [header.map(quote).join(","), ...rows.map((r) => header.map((h) => r[h]).join(","))].join("\n");
    const name = `${values.prefix}${f}.csv`;
    fs.writeFileSync(path.join(values.folder, `.${name}`), `${text}\n`);
    fs.renameSync(path.join(values.folder, `.${name}`), path.join(values.folder, name));
    process.stdout.write(`${path.join(values.folder, name)}: ${rows.length} rows\n`);
  }
} else if (positionals[0] === "nats") {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstream } = await import("@nats-io/jetstream");
  const nc = await connect({ servers: values.servers.split(",") });
  const js = jetstream(nc);
  const pending = [];
  for (let i = 0; i < count; i++) {
    pending.push(js.publish(values.subject, JSON.stringify(row(i))));
    if (pending.length >= 500) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await nc.close();
  process.stdout.write(`${count} messages published to ${values.subject}\n`);
} else {
  process.stderr.write("usage: feed.mjs files|nats [--count N] [--files N] [--subject S] [--servers URL]\n");
  process.exitCode = 2;
}
