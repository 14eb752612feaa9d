/**
 * Deployments (issue 12): a named, stored binding of a model reference to serving settings and an optional rollout.
 * The wire shape (snake_case, as the REST API and `mlship/client` speak it) is the stored shape.
 */
import type { RolloutGuard, RolloutMode } from "../rollout/index.js";

/** Serving settings of a deployment; applied to the resolved version as registry version-setting overrides. */
export interface DeploymentSettings {
  /** Worker instances that load the version (the version setting `instances`). */
  workers?: number;
  batching?: {
    enabled?: boolean;
    max_batch_size?: number;
    max_delay_ms?: number;
    preferred_batch_sizes?: number[];
  };
  cache?: { enabled?: boolean; ttl_seconds?: number };
  max_queue?: number;
  timeout_ms?: number;
  max_request_rows?: number;
}

/**
 * A rollout of a candidate version against the version the deployment's alias points to (the rollout module's
 * start options): `canary`/`ab` send `percent` of traffic to the candidate, `shadow` scores a copy of it.
 */
export interface DeploymentRollout {
  strategy: RolloutMode;
  /** The candidate: a version number, or a reference to a version of the same model (`name@3`, `name@staging`). */
  candidate: string | number;
  /** Default 10. */
  percent?: number;
  /** Default true. */
  sticky?: boolean;
  guard?: RolloutGuard;
}

/** What is stored. */
export interface DeploymentRecord {
  name: string;
  model: string;
  settings: DeploymentSettings;
  rollout: DeploymentRollout | null;
  /** The rollout this deployment started (it may have ended since). */
  rollout_id: string | null;
  created_at: string;
  created_by: string;
  updated_at: string;
  updated_by: string;
}

export type DeploymentState = "ready" | "loading" | "failed";

/** A deployment as read: the record plus what it resolves to now and whether that version is loaded. */
export interface Deployment extends DeploymentRecord {
  /** The version the reference resolves to now; null when it does not resolve (see `error`). */
  resolved: { model: string; version: number } | null;
  state: DeploymentState;
  error?: string;
}

export interface CreateDeploymentInput {
  name: string;
  model: string;
  settings?: DeploymentSettings;
  rollout?: DeploymentRollout | null;
}

/** Fields left out stay as they are; `settings` is merged field by field; `rollout: null` ends the deployment's rollout. */
export interface UpdateDeploymentInput {
  model?: string;
  settings?: DeploymentSettings;
  rollout?: DeploymentRollout | null;
}

export interface DeploymentActor {
  by: string;
  reason?: string;
}
