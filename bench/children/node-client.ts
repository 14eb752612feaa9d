/**
 * A plain Node client loop, for REST (node:http, keep-alive) or gRPC (@grpc/grpc-js, a client built at run time
 * from proto/open_inference_grpc.proto). The gRPC vs REST scenario runs both through this file, so both sides pay
 * the same kind of client cost on the shared cores and the ratio compares the servers' protocol paths.
 */
import http from "node:http";
import { performance } from "node:perf_hooks";
import { Client, credentials, Metadata, status as grpcStatus } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { MethodDefinition } from "@grpc/proto-loader";
import { answer, job, percentile, Samples } from "../lib/child.js";
import { bodyOf, type Cell, type Stream } from "../lib/bodies.js";
import type { LoadResult } from "../lib/load.js";

export interface NodeClientJob {
  mode: "http" | "grpc";
  connections: number;
  warmupSeconds: number;
  seconds: number;
  /** http: base URL and one stream for warm-up and one for measuring. */
  url?: string;
  warmup?: Stream;
  stream?: Stream;
  /** grpc: host:port, proto file, the request. */
  address?: string;
  protoFile?: string;
  channels?: number;
  model?: string;
  inputName?: string;
  shape?: number[];
  /** The row; cell A (index 0) varies per request, cell B (index cellB) per run. */
  row?: number[];
  a?: Cell;
  b?: Cell;
  cellB?: number;
  /** The run numbers (for cell B) of the warm-up and of the measured window. */
  runs?: [number, number];
}

type Send = (n: number, measured: boolean) => Promise<string | undefined>;

/** Runs `connections` loops for `seconds`; a call returns undefined on success, else a status label. */
async function drive(connections: number, seconds: number, send: Send, measured: boolean): Promise<LoadResult | undefined> {
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  const samples = new Samples();
  const statuses: Record<string, number> = {};
  let socketErrors = 0;
  let n = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const t0 = performance.now();
      let label: string | undefined;
      try {
        label = await send(n++, measured);
      } catch {
        socketErrors += 1;
        continue;
      }
      if (label === undefined) samples.push(performance.now() - t0);
      else statuses[label] = (statuses[label] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
  if (!measured) return undefined;
  const elapsed = (performance.now() - start) / 1000;
  const sorted = samples.sorted();
  const non2xx = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    tool: "",
    connections,
    seconds: elapsed,
    ok: samples.length,
    rps: samples.length / elapsed,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    latencyScope: "2xx",
    errors: non2xx + socketErrors,
    statuses,
    socketErrors,
    timeouts: 0,
  };
}

function httpSender(j: NodeClientJob): Send {
  const url = new URL(j.url as string);
  const agent = new http.Agent({ keepAlive: true, maxSockets: j.connections });
  const warm = j.warmup as Stream;
  const stream = j.stream as Stream;
  return (n, measured) =>
    new Promise((resolve, reject) => {
      const s = measured ? stream : warm;
      const body = Buffer.from(bodyOf(s, n));
      const req = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: s.path,
          method: s.method,
          headers: { "content-type": s.contentType, "content-length": body.length },
        },
        (res) => {
          res.on("data", () => undefined);
          res.on("end", () => {
            const code = res.statusCode ?? 0;
            resolve(code >= 200 && code < 300 ? undefined : String(code));
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
}

function grpcSender(j: NodeClientJob): Send {
  const definition = loadSync(j.protoFile as string, { keepCase: true, longs: String, defaults: true, oneofs: true });
  const service = definition["inference.GRPCInferenceService"] as unknown as Record<string, MethodDefinition<object, unknown>>;
  const infer = service.ModelInfer;
  if (infer === undefined) throw new Error("bench: no ModelInfer in the proto");
  // A local subchannel pool per client: separate HTTP/2 connections instead of one shared by every client.
  const clients = Array.from(
    { length: j.channels ?? 1 },
    () => new Client(j.address as string, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
  );
  const row = Float32Array.from(j.row as number[]);
  const a = j.a as Cell;
  const b = j.b as Cell;
  const [warmRun, run] = j.runs as [number, number];
  return (n, measured) => {
    const values = row.slice();
    values[0] = a.base + n * a.step;
    values[j.cellB as number] = b.base + (measured ? run : warmRun) * b.step;
    const request = {
      model_name: j.model,
      inputs: [{ name: j.inputName, datatype: "FP32", shape: j.shape }],
      raw_input_contents: [Buffer.from(values.buffer, values.byteOffset, values.byteLength)],
    };
    const client = clients[n % clients.length] as Client;
    return new Promise((resolve) => {
      client.makeUnaryRequest(infer.path, infer.requestSerialize, infer.responseDeserialize, request, new Metadata(), {}, (err: ServiceError | null) => {
        resolve(err === null ? undefined : `grpc ${grpcStatus[err.code] ?? err.code}`);
      });
    });
  };
}

const j = job<NodeClientJob>();
const send = j.mode === "http" ? httpSender(j) : grpcSender(j);
if (j.warmupSeconds > 0) await drive(j.connections, j.warmupSeconds, send, false);
const result = (await drive(j.connections, j.seconds, send, true)) as LoadResult;
answer({ ...result, tool: j.mode === "http" ? "node:http client" : "grpc-js client" });
process.exit(0);
