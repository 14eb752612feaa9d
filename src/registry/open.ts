import path from "node:path";
import { LocalArtifactStore, openSqlStore } from "../store/index.js";
import { createRegistry } from "./registry.js";
import type { Registry } from "./types.js";

export interface OpenRegistryOptions {
  /** MLSHIP_HOME. */
  home: string;
  /** MLSHIP_STORE: unset for `<home>/mlship.db`, `postgres://...`, or `sqlite:<file>`. */
  store?: string;
  /** Artifact folder; default `<home>/artifacts`. */
  artifacts?: string;
}

/** Opens the store (running migrations) and the local artifact folder, and builds a registry that owns both. */
export async function openRegistry(options: OpenRegistryOptions): Promise<Registry> {
  const store = await openSqlStore({ url: options.store, home: options.home });
  const artifacts = new LocalArtifactStore(options.artifacts ?? path.join(options.home, "artifacts"));
  return createRegistry({ store, artifacts });
}
