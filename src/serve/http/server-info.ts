import os from "node:os";
import type { FastifyPluginAsync } from "fastify";
import type { ServerInfo } from "../../ui/contract.js";
import { mlshipVersion } from "./version.js";

export interface ServerInfoOptions {
  /** Whether the server has an admin token (the token itself never leaves the server). */
  adminToken: boolean;
  /** What `/invocations` serves, when set. */
  defaultModel: string | null;
  /** Areas wired in this server. */
  features: ServerInfo["features"];
  /** Seconds between traffic samples (`/api/v1/traffic`). */
  trafficIntervalSeconds: number;
  /** This server's id among replicas sharing one store (`server.replicaId`). Default `os.hostname()`. */
  replicaId?: string;
  /** When the server started. Default: when the plugin is registered. */
  startedAt?: Date;
}

/**
 * `GET /api/v1/server`: what a client (the dashboard first of all) needs to know about the server before anything
 * else: version, uptime, whether actions need a token, which areas are wired. The composition root says what the
 * server cannot know by itself.
 */
export const serverInfoRoutes: FastifyPluginAsync<ServerInfoOptions> = async (app, options) => {
  const startedAt = options.startedAt ?? new Date();
  const version = mlshipVersion();
  const replicaId = options.replicaId ?? os.hostname();
  app.get("/api/v1/server", async (): Promise<ServerInfo> => ({
    name: "mlship",
    version,
    startedAt: startedAt.toISOString(),
    uptimeSeconds: Math.max(0, (Date.now() - startedAt.getTime()) / 1000),
    auth: { adminToken: options.adminToken },
    defaultModel: options.defaultModel,
    features: { ...options.features },
    trafficIntervalSeconds: options.trafficIntervalSeconds,
    replicaId,
  }));
};

Object.defineProperty(serverInfoRoutes, Symbol.for("skip-override"), { value: true });
