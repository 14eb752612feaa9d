import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import type { DeploymentService } from "./service.js";
import type { CreateDeploymentInput, DeploymentActor, UpdateDeploymentInput } from "./types.js";

export interface DeploymentRoutesOptions {
  deployments: DeploymentService;
  /** Who changes are attributed to when a request has no `x-mlship-user` header. Default `api`. */
  user?: string;
}

interface NameParams {
  name: string;
}

/**
 * Deployments over the management API (`/api/v1/deployments`). Registered on the host server, so the admin token
 * hook guards the writes like every other `/api/v1/` action, and errors answer in the native `{error, code, field}`
 * body (DEPLOYMENT_NOT_FOUND 404, DEPLOYMENT_EXISTS 409, INPUT_INVALID 400 naming the field).
 */
export const deploymentRoutes: FastifyPluginAsync<DeploymentRoutesOptions> = async (app, options) => {
  const { deployments } = options;
  const actorOf = (request: FastifyRequest): DeploymentActor => {
    const header = request.headers["x-mlship-user"];
    const by = typeof header === "string" && header.trim() !== "" ? header.trim() : (options.user ?? "api");
    const reason = request.headers["x-mlship-reason"];
    return typeof reason === "string" && reason !== "" ? { by, reason } : { by };
  };

  app.post("/api/v1/deployments", async (request, reply) => {
    // The service validates the body and names the field of anything wrong in it.
    const created = await deployments.create(request.body as CreateDeploymentInput, actorOf(request));
    return reply.code(201).header("location", `/api/v1/deployments/${created.name}`).send(created);
  });

  app.get("/api/v1/deployments", async () => ({ deployments: await deployments.list() }));

  app.get<{ Params: NameParams }>("/api/v1/deployments/:name", async (request) => deployments.get(request.params.name));

  app.patch<{ Params: NameParams }>("/api/v1/deployments/:name", async (request) =>
    deployments.update(request.params.name, request.body as UpdateDeploymentInput, actorOf(request)),
  );

  app.delete<{ Params: NameParams }>("/api/v1/deployments/:name", async (request, reply) => {
    await deployments.delete(request.params.name, actorOf(request));
    return reply.code(204).send();
  });
};
