// `mlship serve` / `quickstart` expose the gRPC service next to REST: in-process (src) and as the real binary
// (dist, built by `npm test` before vitest), stopping both on abort / SIGTERM.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { fixture, freePort, runCli, spawnCli, startCli, tempDir } from "../cli/helpers.js";
import type { LongRunning } from "../cli/helpers.js";
import { connect, encodeRaw, outputValues, rpc, rpcError } from "./client.js";
import type { InferResponse } from "./client.js";

const bc = fixture("breast_cancer_mlp");
const home = tempDir("grpc-cli");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "ci", MLSHIP_WORKERS: "1", MLSHIP_LOG_LEVEL: "warn" };
const running: LongRunning[] = [];

afterAll(() => {
  for (const r of running) if (r.child.exitCode === null) r.child.kill("SIGKILL");
  fs.rmSync(home, { recursive: true, force: true });
});

/** `serve` in this process until aborted; resolves once the banner is printed. */
async function serveInProcess(args: string[]): Promise<{ stdout: () => string; stop: () => Promise<number> }> {
  const controller = new AbortController();
  let stdout = "";
  let stderr = "";
  const done = main(["node", "mlship", "serve", ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
    cwd: home,
    handleSignals: false,
    signal: controller.signal,
  });
  const deadline = Date.now() + 30_000;
  let finished = false;
  void done.then(() => (finished = true));
  while (!/serving on http/.test(stdout) && !finished && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (!/serving on http/.test(stdout)) throw new Error(`serve did not start\n${stdout}\n${stderr}`);
  return {
    stdout: () => stdout,
    stop: async () => {
      controller.abort();
      return done;
    },
  };
}

async function inferOneRow(address: string): Promise<InferResponse> {
  const client = connect(address);
  try {
    const row = bc.expected.inputs[0] as number[];
    const { response } = await rpc<InferResponse>(client, "ModelInfer", {
      model_name: "breast-cancer@production",
      inputs: [{ name: "input", datatype: "FP32", shape: [1, 30] }],
      raw_input_contents: [encodeRaw("FP32", row)],
    });
    return response;
  } finally {
    client.close();
  }
}

describe("gRPC from the command line", { timeout: 180_000 }, () => {
  beforeAll(async () => {
    const r = await runCli(["models", "register", bc.onnx, "--name", "breast-cancer", "--columns-from", path.join(bc.dir, "train.csv"), "--label-column", "label", "--alias", "production"], { env, cwd: home });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  }, 120_000);

  it("serve --grpc-port PORT answers gRPC on that port and stops both servers on abort", async () => {
    const port = await freePort();
    const server = await serveInProcess(["--port", "0", "--grpc-port", String(port)]);
    const grpcLine = server.stdout().match(/mlship gRPC \(Open Inference Protocol\) on (\S+)/);
    expect(grpcLine?.[1]).toBe(`127.0.0.1:${port}`);
    const url = (server.stdout().match(/serving on (http:\/\/\S+)/) as RegExpMatchArray)[1] as string;
    expect((await fetch(`${url}/v2/health/live`)).status).toBe(200);

    const address = `127.0.0.1:${port}`;
    const response = await inferOneRow(address);
    expect(response.model_name).toBe("breast-cancer");
    expect(response.model_version).toBe("1");
    expect(outputValues(response, "label")).toEqual([bc.expected.outputs.label?.[0]]);

    expect(await server.stop()).toBe(0);
    await expect(fetch(`${url}/v2/health/live`)).rejects.toThrow();
    const after = connect(address);
    try {
      expect((await rpcError(after, "ServerLive", {})).code).toBe(status.UNAVAILABLE);
    } finally {
      after.close();
    }
  });

  it("--grpc-port -1 turns gRPC off; the default follows --port 0 to a free port", async () => {
    const off = await serveInProcess(["--port", "0", "--grpc-port", "-1"]);
    expect(off.stdout()).not.toContain("gRPC");
    expect(await off.stop()).toBe(0);

    const auto = await serveInProcess(["--port", "0"]);
    const address = auto.stdout().match(/mlship gRPC \(Open Inference Protocol\) on (\S+)/)?.[1];
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(address).not.toBe("127.0.0.1:8081");
    const client = connect(address as string);
    try {
      expect((await rpc(client, "ServerReady", {})).response).toEqual({ ready: true });
    } finally {
      client.close();
    }
    expect(await auto.stop()).toBe(0);
  });

  it("reads server.grpcPort from MLSHIP_GRPC_PORT and flags, with a default of 8081, and names bad values", async () => {
    const show = async (extraEnv: Record<string, string>, ...args: string[]) => {
      const r = await runCli(["config", "--json", ...args], { env: { ...env, ...extraEnv }, cwd: home });
      return JSON.parse(r.stdout) as { config: { server: { grpcPort: number; grpcMaxMessageBytes: number } }; sources: Record<string, string> };
    };
    const defaults = await show({});
    expect(defaults.config.server.grpcPort).toBe(8081);
    expect(defaults.config.server.grpcMaxMessageBytes).toBe(64 * 1024 * 1024);
    expect(defaults.sources["server.grpcPort"]).toBe("default");
    const fromEnv = await show({ MLSHIP_GRPC_PORT: "-1", MLSHIP_GRPC_MAX_MESSAGE_BYTES: "1048576" });
    expect(fromEnv.config.server.grpcPort).toBe(-1);
    expect(fromEnv.config.server.grpcMaxMessageBytes).toBe(1048576);
    expect(fromEnv.sources["server.grpcPort"]).toBe("MLSHIP_GRPC_PORT");
    expect((await show({ MLSHIP_PORT: "0" })).config.server.grpcPort).toBe(0);
    expect((await show({ MLSHIP_PORT: "0", MLSHIP_GRPC_PORT: "9001" })).config.server.grpcPort).toBe(9001);

    const bad = await runCli(["serve", "--grpc-port", "-2"], { env, cwd: home });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^mlship: config key server\.grpcPort from --grpc-port: .* is not an integer from -1 to 65535 \[MLSHIP_ERR_CONFIG_INVALID\]\n$/);
  });

  it("says the gRPC port is taken in one stderr line, and exits (nothing left listening)", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await spawnCli(["serve", "--port", "0", "--grpc-port", String(port)], { env, cwd: home });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(`127.0.0.1:${port}: it is already in use`);
      expect(r.stderr).toContain("--grpc-port");
      expect(r.stderr).toContain("[MLSHIP_ERR_CONFIG_INVALID]");
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("the real binary serves gRPC next to REST and exits 0 on SIGTERM, closing both", async () => {
    const grpcPort = await freePort();
    const proc = startCli(["serve", "--port", "0", "--grpc-port", String(grpcPort), "--model", "breast-cancer@production"], { env, cwd: home });
    running.push(proc);
    const [, address] = await proc.waitForStdout(/mlship gRPC \(Open Inference Protocol\) on (\S+)/, 90_000);
    expect(address).toBe(`127.0.0.1:${grpcPort}`);
    const url = (proc.stdout().match(/serving on (http:\/\/\S+)/) as RegExpMatchArray)[1] as string;
    const response = await inferOneRow(address as string);
    expect(outputValues(response, "label")).toEqual([bc.expected.outputs.label?.[0]]);

    proc.child.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    await expect(fetch(`${url}/v2/health/live`)).rejects.toThrow();
    const after = connect(address as string);
    try {
      expect((await rpcError(after, "ServerLive", {})).code).toBe(status.UNAVAILABLE);
    } finally {
      after.close();
    }
  });

  it("quickstart prints the gRPC address and a grpcurl line that names the shipped proto", async () => {
    const qsHome = tempDir("grpc-quickstart");
    try {
      const proc = startCli(["quickstart", "--port", "0"], { env: { ...env, MLSHIP_HOME: qsHome } });
      running.push(proc);
      await proc.waitForStdout(/Stop with Ctrl\+C/, 90_000);
      const out = proc.stdout();
      const address = out.match(/mlship gRPC \(Open Inference Protocol\) on (\S+)/)?.[1] as string;
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
      const line = out.split("\n").find((l) => l.trim().startsWith("grpcurl ")) as string;
      const m = line.match(/-import-path '([^']+)' -proto (\S+) -d '(.*)' (\S+) inference\.GRPCInferenceService\/ModelInfer$/);
      expect(m, line).not.toBeNull();
      const [, dir, file, json, target] = m as RegExpMatchArray;
      expect(fs.existsSync(path.join(dir as string, file as string))).toBe(true);
      expect(target).toBe(address);
      // The printed request, sent as printed (grpcurl's JSON uses the proto field names), answers.
      const client = connect(address);
      try {
        const { response } = await rpc<InferResponse>(client, "ModelInfer", JSON.parse((json as string).replace(/'\\''/g, "'")) as object);
        expect(response.model_name).toBe("breast-cancer");
        expect(outputValues(response, "probabilities")).toHaveLength(2);
      } finally {
        client.close();
      }
      proc.child.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    } finally {
      fs.rmSync(qsHome, { recursive: true, force: true });
    }
  });
});
