// The container and Kubernetes files agree with the code: every MLSHIP_* variable they set is one the config loader
// reads and loads without error; ports, probes and metric names are those a real server has; the commands of the
// Job, the stream consumers and the image parse with the real CLI; the image name and the Dockerfile's shape hold.
// No Docker engine or cluster runs here, so these checks are what keeps deploy/ from drifting away from the code.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CommanderError, type Command } from "commander";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { parseShard } from "../../src/cli/batch.js";
import { CliContext } from "../../src/cli/context.js";
import { main, buildProgram } from "../../src/cli/main.js";
import { defaultConfig, KEYS, loadConfig, type MlshipConfig } from "../../src/config/index.js";
import { buildServer } from "../../src/serve/index.js";
import { parseStreamConfig } from "../../src/stream/config.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const K8S = path.join(REPO, "deploy", "kubernetes");
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const PACKAGE_VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string }).version;
const IMAGE = `mlship:${PACKAGE_VERSION}`;
/** Every variable the config loader reads, taken from the schema it reads them with. */
const KNOWN_ENV = new Set(KEYS.map((k) => k.env));

// ---------- Kubernetes objects ----------

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes objects are read as parsed YAML; each access is checked by expect */
type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; annotations?: Record<string, string> }; [key: string]: any };
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: any;
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { name: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  resources?: any;
  volumeMounts?: { name: string; mountPath: string }[];
  startupProbe?: any;
  livenessProbe?: any;
  readinessProbe?: any;
  lifecycle?: any;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

function readObjects(file: string): K8sObject[] {
  return YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((doc) => {
    expect(doc.errors, `${file}: YAML errors`).toEqual([]);
    return doc.toJS() as K8sObject;
  });
}

const manifestFiles = fs.readdirSync(K8S).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
const objects = manifestFiles.flatMap((f) => readObjects(path.join(K8S, f)).map((o) => Object.assign(o, { file: f })));
const kustomization = YAML.parse(fs.readFileSync(path.join(K8S, "kustomization.yaml"), "utf8")) as {
  resources: string[];
  images?: { name: string; newName?: string; newTag?: string }[];
};

function find(kind: string, name: string): K8sObject & { file: string } {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} under deploy/kubernetes`);
  return found;
}

const configMaps = new Map(objects.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o.data as Record<string, string>]));
const secrets = new Map(objects.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, o.stringData as Record<string, string>]));
const server = find("Deployment", "mlship");
const stream = find("Deployment", "mlship-stream");
const job = find("Job", "mlship-batch-breast-cancer");
const podSpecOf = (o: K8sObject) => o.spec.template.spec as { containers: Container[]; volumes?: { name: string; [k: string]: unknown }[]; terminationGracePeriodSeconds?: number; securityContext?: { runAsUser?: number; runAsNonRoot?: boolean } };
const only = (o: K8sObject): Container => {
  expect(podSpecOf(o).containers).toHaveLength(1);
  return podSpecOf(o).containers[0]!;
};

/** A CPU quantity ("2", "1500m") rounded up to whole cores, as resourceFieldRef with divisor 1 gives it. */
function cores(quantity: string): number {
  return quantity.endsWith("m") ? Math.ceil(Number(quantity.slice(0, -1)) / 1000) : Math.ceil(Number(quantity));
}

/**
 * The environment a container gets: the image's ENV, then envFrom, then env (later wins, as in Kubernetes), with
 * secret and field references resolved to the manifests' values (a pod name for metadata.name).
 */
function containerEnv(container: Container, imageEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...imageEnv };
  for (const from of container.envFrom ?? []) {
    if (from.configMapRef !== undefined) {
      const data = configMaps.get(from.configMapRef.name);
      expect(data, `ConfigMap ${from.configMapRef.name}`).toBeDefined();
      Object.assign(env, data);
    }
    if (from.secretRef !== undefined) {
      const data = secrets.get(from.secretRef.name);
      expect(data, `Secret ${from.secretRef.name}`).toBeDefined();
      Object.assign(env, data);
    }
  }
  for (const v of container.env ?? []) {
    if (v.value !== undefined) env[v.name] = v.value;
    else if (v.valueFrom?.secretKeyRef !== undefined) {
      const value = secrets.get(v.valueFrom.secretKeyRef.name)?.[v.valueFrom.secretKeyRef.key];
      expect(value, `${v.name}: secret ${v.valueFrom.secretKeyRef.name}/${v.valueFrom.secretKeyRef.key}`).toBeDefined();
      env[v.name] = value!;
    } else if (v.valueFrom?.configMapKeyRef !== undefined) {
      const value = configMaps.get(v.valueFrom.configMapKeyRef.name)?.[v.valueFrom.configMapKeyRef.key];
      expect(value, `${v.name}: configmap ${v.valueFrom.configMapKeyRef.name}/${v.valueFrom.configMapKeyRef.key}`).toBeDefined();
      env[v.name] = value!;
    } else if (v.valueFrom?.resourceFieldRef !== undefined) {
      const ref = v.valueFrom.resourceFieldRef as { containerName?: string; resource: string; divisor?: string };
      expect(ref.containerName ?? container.name).toBe(container.name);
      expect(ref.divisor ?? "1").toBe("1");
      const [kind, resource] = ref.resource.split(".") as ["requests" | "limits", string];
      const quantity = container.resources?.[kind]?.[resource] as string | undefined;
      expect(quantity, `${v.name}: ${ref.resource} is set on the container`).toBeDefined();
      env[v.name] = String(cores(String(quantity)));
    } else if (v.valueFrom?.fieldRef !== undefined) {
      const fieldPath = v.valueFrom.fieldRef.fieldPath as string;
      env[v.name] = fieldPath === "metadata.name" ? "mlship-stream-6d8f7c9b5-x2x4z" : fieldPath.includes("job-completion-index") ? "0" : "field";
    } else throw new Error(`${container.name}: env ${v.name} has no value`);
  }
  return env;
}

/** A file the container sees through a Secret or ConfigMap volume, with its content from the manifests. */
function mountedFile(podSpec: ReturnType<typeof podSpecOf>, container: Container, file: string): string {
  for (const mount of container.volumeMounts ?? []) {
    if (!file.startsWith(`${mount.mountPath}/`)) continue;
    const relative = file.slice(mount.mountPath.length + 1);
    const volume = podSpec.volumes?.find((v) => v.name === mount.name) as
      | { secret?: { secretName: string; items?: { key: string; path: string }[] }; configMap?: { name: string; items?: { key: string; path: string }[] } }
      | undefined;
    const source = volume?.secret ?? volume?.configMap;
    if (source === undefined) continue;
    const data = volume?.secret !== undefined ? secrets.get(volume.secret.secretName) : configMaps.get(volume!.configMap!.name);
    const key = source.items === undefined ? relative : source.items.find((i) => i.path === relative)?.key;
    const value = key === undefined ? undefined : data?.[key];
    if (value !== undefined) return value;
  }
  throw new Error(`${container.name}: ${file} is not a file of a mounted Secret or ConfigMap`);
}

/** The container's config as mlship would load it (files named by *_FILE variables materialised from the volumes). */
function containerConfig(o: K8sObject, imageEnv: Record<string, string>): { env: Record<string, string>; config: MlshipConfig } {
  const container = only(o);
  const env = containerEnv(container, imageEnv);
  const unknown = Object.keys(env).filter((name) => name.startsWith("MLSHIP_") && !KNOWN_ENV.has(name));
  expect(unknown, `${o.file}: MLSHIP_* variables the config loader does not read`).toEqual([]);
  const loadEnv = { ...env };
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-deploy-env-"));
  for (const def of KEYS) {
    if (def.env.endsWith("_FILE") && env[def.env] !== undefined) {
      const copy = path.join(scratch, path.basename(env[def.env]!));
      fs.writeFileSync(copy, mountedFile(podSpecOf(o), container, env[def.env]!));
      loadEnv[def.env] = copy;
    }
  }
  return { env, config: loadConfig({ env: loadEnv, cwd: scratch }) };
}

// ---------- Dockerfile ----------

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Dockerfile instructions (continuations joined, comments dropped), each with the index of its stage. */
function parseDockerfile(text: string): Instruction[] {
  const lines = text.split("\n").filter((l) => !/^\s*#/.test(l));
  const joined: string[] = [];
  let current = "";
  for (const line of lines) {
    if (/\\\s*$/.test(line)) current += line.replace(/\\\s*$/, " ");
    else {
      current += line;
      if (current.trim() !== "") joined.push(current.trim());
      current = "";
    }
  }
  let stage = -1;
  return joined.map((line) => {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    if (m === null) throw new Error(`Dockerfile: cannot read "${line}"`);
    const op = m[1]!.toUpperCase();
    if (op === "FROM") stage += 1;
    return { op, args: m[2]!.trim(), stage };
  });
}

/** `KEY=value KEY2="value 2"` pairs of ENV/LABEL. */
function keyValues(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/([\w.-]+)=("(?:[^"\\]|\\.)*"|\S+)/g)) out[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
  return out;
}

const dockerfile = parseDockerfile(fs.readFileSync(path.join(REPO, "Dockerfile"), "utf8"));
const finalStage = Math.max(...dockerfile.map((i) => i.stage));
const runtime = dockerfile.filter((i) => i.stage === finalStage);
const imageEnv: Record<string, string> = Object.assign({}, ...runtime.filter((i) => i.op === "ENV").map((i) => keyValues(i.args)));
const jsonForm = (op: string): string[] => {
  const instruction = runtime.find((i) => i.op === op);
  expect(instruction, `Dockerfile ${op}`).toBeDefined();
  return JSON.parse(instruction!.args) as string[];
};

// ---------- the real CLI, with every action replaced by a recorder ----------

interface Parsed {
  path: string[];
  args: unknown[];
  opts: Record<string, unknown>;
}

/** Parses `argv` (arguments after `mlship`) with the real program's commands and options, running nothing. */
async function parseCli(argv: string[]): Promise<Parsed> {
  const sink = { write: () => true };
  const program = buildProgram(new CliContext({ stdout: sink, stderr: sink, env: {}, cwd: REPO, handleSignals: false }));
  let parsed: Parsed | undefined;
  const record = (cmd: Command): void => {
    cmd.action((...all: unknown[]) => {
      const command = all[all.length - 1] as Command;
      const names: string[] = [];
      for (let c: Command | null = command; c !== null && c.parent !== null; c = c.parent) names.unshift(c.name());
      parsed = { path: names, args: all.slice(0, -2), opts: command.optsWithGlobals() };
    });
    cmd.commands.forEach(record);
  };
  program.commands.forEach(record);
  await program.parseAsync(["node", "mlship", ...argv], { from: "node" });
  if (parsed === undefined) throw new Error(`mlship ${argv.join(" ")} ran no command`);
  return parsed;
}

/** Kubernetes expands $(VAR) in args from the container's env; a reference to an undefined variable stays as it is. */
function expand(args: readonly string[], env: Record<string, string>, container: Container): string[] {
  const declared = new Set((container.env ?? []).map((v) => v.name));
  return args.map((arg) =>
    arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_all, name: string) => {
      expect(declared.has(name) || env[name] !== undefined, `$(${name}) in ${container.name}'s args is declared in its env`).toBe(true);
      return env[name]!;
    }),
  );
}

// ---------- a real server ----------

let home: string;
let app: Mlship;
let http: FastifyInstance;
let metricsText = "";

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-deploy-"));
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: "breast-cancer", alias: "production" });
  http = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
  await http.ready();
  const example = fs.readFileSync(path.join(EXAMPLE, "input_example.json"), "utf8");
  const scored = await http.inject({ method: "POST", url: "/invocations", headers: { "content-type": "application/json" }, payload: example });
  expect(scored.statusCode, scored.body).toBe(200);
  metricsText = (await http.inject({ method: "GET", url: "/metrics" })).body;
}, 60_000);

afterAll(async () => {
  await http?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

/** Metric family names in a Prometheus text exposition. */
function metricNames(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

describe("Kubernetes manifests", () => {
  it("parse, and kustomization.yaml lists files that exist; the rest are documented in deploy/README.md", () => {
    expect(objects.length).toBeGreaterThan(8);
    for (const o of objects) {
      expect(o.apiVersion, o.file).toBeTruthy();
      expect(o.kind, o.file).toBeTruthy();
      expect(o.metadata?.name, o.file).toBeTruthy();
    }
    const readme = fs.readFileSync(path.join(REPO, "deploy", "README.md"), "utf8");
    for (const file of kustomization.resources) expect(fs.existsSync(path.join(K8S, file)), file).toBe(true);
    for (const file of manifestFiles) {
      if (!kustomization.resources.includes(file)) expect(readme, `${file} is applied on its own: deploy/README.md says how`).toContain(file);
    }
  });

  it("use one image, mlship:<package version>, in every container, the kustomize images entry and the docs", () => {
    const workloads = objects.filter((o) => o.spec?.template?.spec?.containers !== undefined);
    expect(workloads.map((o) => o.metadata.name).sort()).toEqual(["mlship", "mlship-batch-breast-cancer", "mlship-stream"]);
    for (const o of workloads) for (const c of podSpecOf(o).containers) expect(c.image, `${o.file} ${c.name}`).toBe(IMAGE);
    expect(kustomization.images).toEqual([{ name: "mlship", newName: "mlship", newTag: PACKAGE_VERSION }]);
    const label = Object.assign({}, ...runtime.filter((i) => i.op === "LABEL").map((i) => keyValues(i.args))) as Record<string, string>;
    expect(label["org.opencontainers.image.version"]).toBe(PACKAGE_VERSION);
    for (const doc of ["deploy/README.md", "docs/deployment.md"]) {
      const tags = [...fs.readFileSync(path.join(REPO, doc), "utf8").matchAll(/docker build -t (\S+)/g)].map((m) => m[1]);
      expect(tags.length, doc).toBeGreaterThan(0);
      for (const tag of tags) expect(tag, doc).toBe(IMAGE);
    }
  });

  it("set only MLSHIP_* variables the config loader reads, with values it accepts", () => {
    for (const o of [server, stream, job]) containerConfig(o, imageEnv);
    // Every key of the shared ConfigMap is an mlship setting (a typo would be silently ignored by the loader).
    const shared = configMaps.get("mlship-config")!;
    for (const name of Object.keys(shared)) expect(KNOWN_ENV.has(name), name).toBe(true);
  });

  it("open the server's containerPorts, Service ports and probes on the ports its config says", () => {
    const { config } = containerConfig(server, imageEnv);
    const container = only(server);
    const portOf = (name: string) => container.ports?.find((p) => p.name === name)?.containerPort;
    expect(portOf("http")).toBe(config.server.port);
    expect(portOf("grpc")).toBe(config.server.grpcPort);
    expect(config.server.host).toBe("0.0.0.0");
    for (const probe of [container.startupProbe, container.livenessProbe, container.readinessProbe]) {
      const port = probe.httpGet.port as string | number;
      expect(typeof port === "number" ? port : portOf(port)).toBe(config.server.port);
    }
    expect(Number(server.spec.template.metadata.annotations["prometheus.io/port"])).toBe(config.server.port);
    const service = find("Service", "mlship");
    expect(service.spec.selector).toEqual(server.spec.selector.matchLabels);
    const servicePorts = service.spec.ports as { name: string; port: number; targetPort: string | number }[];
    expect(servicePorts.map((p) => p.name).sort()).toEqual(["grpc", "http"]);
    for (const p of servicePorts) {
      const target = typeof p.targetPort === "number" ? p.targetPort : portOf(p.targetPort);
      expect(target, p.name).toBe(p.name === "http" ? config.server.port : config.server.grpcPort);
    }
    const pdb = find("PodDisruptionBudget", "mlship");
    expect(pdb.spec.selector.matchLabels).toEqual(server.spec.selector.matchLabels);
  });

  it("probe paths and the scrape path that a real server answers with 200", async () => {
    const container = only(server);
    const paths = [container.startupProbe, container.livenessProbe, container.readinessProbe].map((p) => p.httpGet.path as string);
    expect(paths).toContain("/v2/health/live");
    expect(paths).toContain("/v2/health/ready");
    paths.push(server.spec.template.metadata.annotations["prometheus.io/path"] as string);
    for (const url of new Set(paths)) {
      const res = await http.inject({ method: "GET", url });
      expect(res.statusCode, url).toBe(200);
    }
  });

  it("give the server a grace period longer than its preStop sleep plus its shutdown timeout", () => {
    const { config } = containerConfig(server, imageEnv);
    const command = only(server).lifecycle.preStop.exec.command as string[];
    expect(command[0]).toBe("sleep");
    const preStopMs = Number(command[1]) * 1000;
    const graceMs = podSpecOf(server).terminationGracePeriodSeconds! * 1000;
    expect(graceMs).toBeGreaterThan(preStopMs + config.server.shutdownTimeoutMs);
  });

  it("scale the server Deployment on CPU and on a per-pod metric the server exports (through the adapter rule)", () => {
    const hpa = find("HorizontalPodAutoscaler", "mlship");
    expect(hpa.apiVersion).toBe("autoscaling/v2");
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: server.metadata.name });
    const metrics = hpa.spec.metrics as { type: string; resource?: { name: string }; pods?: { metric: { name: string } } }[];
    expect(metrics.some((m) => m.type === "Resource" && m.resource?.name === "cpu")).toBe(true);
    const podMetrics = metrics.filter((m) => m.type === "Pods").map((m) => m.pods!.metric.name);
    expect(podMetrics.length).toBeGreaterThan(0);
    const exported = metricNames(metricsText);
    const adapter = YAML.parse(fs.readFileSync(path.join(REPO, "deploy", "prometheus-adapter", "rules.yaml"), "utf8")) as {
      rules: { seriesQuery: string; name: { matches: string; as: string } }[];
    };
    for (const name of podMetrics) {
      const rule = adapter.rules.find((r) => r.name.as === name);
      expect(rule, `an adapter rule exposes ${name}`).toBeDefined();
      const series = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(rule!.seriesQuery)![1]!;
      expect(new RegExp(rule!.name.matches).test(series)).toBe(true);
      expect(exported.has(series), `${series} in a real server's /metrics`).toBe(true);
      // A gauge: the HPA averages its current value per pod.
      expect(metricsText).toMatch(new RegExp(`^# TYPE ${series} gauge$`, "m"));
      expect(metricsText).toMatch(new RegExp(`^${series}\\{[^}]*model="breast-cancer"`, "m"));
    }
  });

  it("run the Indexed Job as `mlship batch score --shard $(JOB_COMPLETION_INDEX)/N` with N = completions", async () => {
    const container = only(job);
    expect(job.spec.completionMode).toBe("Indexed");
    const n = job.spec.completions as number;
    expect(job.spec.parallelism).toBe(n);
    expect(container.command).toBeUndefined(); // the image's ENTRYPOINT runs mlship
    const shardArg = container.args![container.args!.indexOf("--shard") + 1];
    expect(shardArg).toBe(`$(JOB_COMPLETION_INDEX)/${n}`);
    const { env } = containerConfig(job, imageEnv);
    for (let i = 0; i < n; i++) {
      const parsed = await parseCli(expand(container.args!, { ...env, JOB_COMPLETION_INDEX: String(i) }, container));
      expect(parsed.path).toEqual(["batch", "score"]);
      expect(parseShard(String(parsed.opts.shard))).toEqual({ index: i, count: n });
      expect(parsed.opts.resumeIfAny).toBe(true);
      expect(String(parsed.opts.input).startsWith(container.volumeMounts!.find((m) => m.name === "data")!.mountPath)).toBe(true);
    }
  });

  it("run several stream consumers on one durable, each its own --instance, with a valid job config", async () => {
    const container = only(stream);
    expect(stream.spec.replicas).toBeGreaterThan(1);
    const { env, config } = containerConfig(stream, imageEnv);
    const parsed = await parseCli(expand(container.args!, env, container));
    expect(parsed.path).toEqual(["stream", "run"]);
    expect(parsed.opts.instance).toBe(env.POD_NAME);
    const metricsPort = Number(parsed.opts.metricsPort);
    expect(container.ports!.find((p) => p.name === "metrics")?.containerPort).toBe(metricsPort);
    expect(Number(stream.spec.template.metadata.annotations["prometheus.io/port"])).toBe(metricsPort);
    expect(container.livenessProbe.httpGet.port).toBe("metrics");
    // The job's config is the ConfigMap's file, and it is a valid stream job sharing one NATS durable.
    const text = mountedFile(podSpecOf(stream), container, String(parsed.opts.config));
    const job = parseStreamConfig(YAML.parse(text), { baseDir: "/etc/mlship", home: config.home, env: {} });
    expect(job.source.kind).toBe("nats");
    expect((job.source as { durable?: string }).durable).toMatch(/\S/);
    expect(job.aggregations).toEqual([]); // stateless: a replaced pod loses no operator state (see the manifest)
    expect(job.join).toBeUndefined();
  });

  it("serve the stream consumer's liveness path and /metrics from a real `mlship stream run`", async () => {
    // The manifest's job, reading a folder and writing files instead of NATS and PostgreSQL, on the real model.
    const container = only(stream);
    const { env } = containerConfig(stream, imageEnv);
    const parsed = await parseCli(expand(container.args!, env, container));
    const manifestJob = YAML.parse(mountedFile(podSpecOf(stream), container, String(parsed.opts.config))) as Record<string, unknown>;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-deploy-stream-"));
    fs.mkdirSync(path.join(dir, "in"));
    const local = { ...manifestJob, source: { kind: "folder", path: path.join(dir, "in") }, sinks: [{ kind: "jsonl", path: path.join(dir, "out") }], deadLetter: { kind: "jsonl", path: path.join(dir, "dead") }, trigger: { processingTime: "200ms" } };
    fs.writeFileSync(path.join(dir, "stream.yaml"), YAML.stringify(local));
    const stderr: string[] = [];
    const stop = new AbortController();
    const running = main(["node", "mlship", "--home", home, "stream", "run", "--config", path.join(dir, "stream.yaml"), "--instance", String(parsed.opts.instance), "--metrics-port", "0", "--json"], {
      stdout: { write: () => true },
      stderr: { write: (chunk: string) => stderr.push(chunk) },
      env: { MLSHIP_HOST: "127.0.0.1", MLSHIP_LOG_LEVEL: "warn", MLSHIP_WORKERS: "1" },
      cwd: dir,
      signal: stop.signal,
      handleSignals: false,
    });
    try {
      let url: string | undefined;
      for (let i = 0; i < 300 && url === undefined; i++) {
        url = /stream metrics on (http:\/\/\S+)\/metrics/.exec(stderr.join(""))?.[1];
        if (url === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      expect(url, stderr.join("")).toBeDefined();
      const health = await fetch(`${url!}${container.livenessProbe.httpGet.path as string}`);
      expect(health.status).toBe(200);
      const scrape = await fetch(`${url!}${stream.spec.template.metadata.annotations["prometheus.io/path"] as string}`);
      expect(scrape.status).toBe(200);
      expect(await scrape.text()).toContain("mlship_stream_consumer_lag");
    } finally {
      stop.abort();
      expect(await running, stderr.join("")).toBe(0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("run every pod as the image's non-root user, read-only, with emptyDirs for MLSHIP_HOME and /tmp, on shared state", () => {
    const user = runtime.find((i) => i.op === "USER")!.args.split(":")[0];
    for (const o of [server, stream, job]) {
      const spec = podSpecOf(o);
      expect(spec.securityContext?.runAsNonRoot, o.file).toBe(true);
      expect(String(spec.securityContext?.runAsUser), o.file).toBe(user);
      const container = only(o);
      expect((container as { securityContext?: { readOnlyRootFilesystem?: boolean } }).securityContext?.readOnlyRootFilesystem, o.file).toBe(true);
      const { config } = containerConfig(o, imageEnv);
      for (const writable of [config.home, "/tmp"]) {
        const mount = container.volumeMounts!.find((m) => m.mountPath === writable);
        expect(mount, `${o.file}: ${writable} is mounted`).toBeDefined();
        expect(spec.volumes!.find((v) => v.name === mount!.name)?.emptyDir, `${o.file}: ${writable} is an emptyDir`).toBeDefined();
      }
      // Every replica, consumer and batch pod loads models from one shared artifact store, not its own disk.
      expect(config.artifacts, o.file).toMatch(/^s3:\/\//);
      expect(config.store, o.file).toMatch(/^postgres(ql)?:\/\//);
    }
  });

  it("take credentials only from the Secret, never as literal values", () => {
    const credential = /TOKEN|PASSWORD|SECRET|ACCESS_KEY|^MLSHIP_STORE$/;
    const shared = configMaps.get("mlship-config")!;
    for (const name of Object.keys(shared)) expect(credential.test(name), `ConfigMap key ${name}`).toBe(false);
    for (const o of [server, stream, job]) {
      const container = only(o);
      for (const v of container.env ?? []) {
        // A *_FILE variable names where a mounted credential is, not the credential.
        if (credential.test(v.name) && !v.name.endsWith("_FILE")) expect(v.valueFrom?.secretKeyRef?.name, `${o.file} ${v.name}`).toBe("mlship-secrets");
      }
      // The admin token is read from the mounted Secret file, so it is in no pod's environment.
      expect((container.env ?? []).some((v) => v.name === "MLSHIP_ADMIN_TOKEN"), o.file).toBe(false);
    }
    expect(containerEnv(only(server), imageEnv).MLSHIP_ADMIN_TOKEN_FILE).toMatch(/^\/etc\/mlship\/secrets\//);
  });
});

describe("Dockerfile", () => {
  it("is multi-stage: node:20-bookworm-slim build stage with npm ci after .npmrc, a runtime stage copying its output", () => {
    const froms = dockerfile.filter((i) => i.op === "FROM");
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms[0]!.args).toMatch(/^node:20-bookworm-slim AS build$/i);
    expect(froms[finalStage]!.args).toMatch(/^node:20-bookworm-slim\b/);
    const build = dockerfile.filter((i) => i.stage === 0);
    const npmrcAt = build.findIndex((i) => i.op === "COPY" && i.args.split(/\s+/).includes(".npmrc"));
    const ciAt = build.findIndex((i) => i.op === "RUN" && /\bnpm ci\b/.test(i.args));
    expect(npmrcAt).toBeGreaterThanOrEqual(0);
    expect(ciAt).toBeGreaterThan(npmrcAt);
    expect(fs.readFileSync(path.join(REPO, ".npmrc"), "utf8")).toMatch(/^onnxruntime-node-install=skip$/m);
    expect(build.some((i) => i.op === "RUN" && /npm run build/.test(i.args) && /npm prune --omit=dev/.test(i.args))).toBe(true);
    for (const wanted of ["/app/node_modules", "/app/dist", "/app/package.json"]) {
      expect(runtime.some((i) => i.op === "COPY" && i.args.startsWith("--from=build ") && i.args.includes(wanted)), wanted).toBe(true);
    }
  });

  it("copies only files that exist and that .dockerignore lets through", () => {
    const ignored = fs
      .readFileSync(path.join(REPO, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    for (const must of ["node_modules", "dist", ".mlship", "test-artifacts", ".tmp", "bench/results"]) expect(ignored).toContain(must);
    for (const copy of dockerfile.filter((i) => i.op === "COPY" && !i.args.startsWith("--from="))) {
      const parts = copy.args.split(/\s+/);
      for (const source of parts.slice(0, -1)) {
        expect(fs.existsSync(path.join(REPO, source)), `COPY ${source}`).toBe(true);
        expect(ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)), `COPY ${source} is not ignored`).toBe(false);
      }
    }
  });

  it("runs as a fixed non-root uid, with a HEALTHCHECK on the live endpoint, its ENTRYPOINT file and a CMD the CLI parses", async () => {
    const user = runtime.filter((i) => i.op === "USER").at(-1)!.args;
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user.split(":")[0])).toBeGreaterThan(0);
    const healthcheck = runtime.find((i) => i.op === "HEALTHCHECK");
    expect(healthcheck?.args).toContain("/v2/health/live");
    // The check itself, run as Docker runs it, against a real listening server: exit 0; against a closed port: 1.
    const probe = JSON.parse(/\bCMD\s+(\[.*\])\s*$/.exec(healthcheck!.args)![1]!) as string[];
    expect(probe[0]).toBe("node");
    await http.listen({ host: "127.0.0.1", port: 0 });
    const port = (http.server.address() as AddressInfo).port;
    // Asynchronously: the server answering it runs in this process.
    const run = (env: Record<string, string>) =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, probe.slice(1), { env: { ...process.env, ...env }, stdio: "ignore", timeout: 10_000 });
        child.on("exit", (code) => resolve(code));
      });
    expect(await run({ MLSHIP_PORT: String(port) })).toBe(0);
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    expect(await run({ MLSHIP_PORT: String(closedPort) })).toBe(1);
    const entrypoint = jsonForm("ENTRYPOINT");
    expect(entrypoint[0]).toBe("node");
    expect(fs.existsSync(path.join(REPO, entrypoint[1]!)), entrypoint[1]).toBe(true);
    expect(runtime.some((i) => i.op === "COPY" && i.args.split(/\s+/)[0] === path.dirname(entrypoint[1]!))).toBe(true);
    const cmd = jsonForm("CMD");
    const parsed = await parseCli(cmd);
    expect(parsed.path).toEqual(["serve"]);
    expect(parsed.opts.host).toBe("0.0.0.0");
  });

  it("sets MLSHIP_HOME as a volume and exposes the ports its config uses", () => {
    const unknown = Object.keys(imageEnv).filter((name) => name.startsWith("MLSHIP_") && !KNOWN_ENV.has(name));
    expect(unknown).toEqual([]);
    const config = loadConfig({ env: imageEnv, cwd: REPO });
    expect(config.home).toBe("/var/lib/mlship");
    expect(JSON.parse(runtime.find((i) => i.op === "VOLUME")!.args)).toEqual([config.home]);
    const exposed = runtime.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/).map((p) => Number(p.split("/")[0])));
    expect(exposed.sort()).toEqual([config.server.port, config.server.grpcPort].sort());
  });

  it("rejects what it should: an unknown MLSHIP_ variable and a bad port are caught by the same checks", () => {
    // The checks above can fail: a misspelt variable is not in the loader's set, and the loader refuses a bad value.
    expect(KNOWN_ENV.has("MLSHIP_GRPCPORT")).toBe(false);
    expect(() => loadConfig({ env: { MLSHIP_PORT: "http" }, cwd: REPO })).toThrow(/server\.port/);
    return expect(parseCli(["serve", "--hots", "0.0.0.0"])).rejects.toBeInstanceOf(CommanderError);
  });
});
