# syntax=docker/dockerfile:1
# mlship server image: `docker build -t mlship:0.1.0 .` then `docker run -p 8080:8080 -p 8081:8081 mlship:0.1.0`.
# docs/deployment.md explains the image, its settings and the Kubernetes manifests under deploy/.

# ---- build: install every dependency, compile TypeScript and the dashboard, then drop the dev dependencies ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
ENV npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
# .npmrc first: `onnxruntime-node-install=skip` keeps onnxruntime-node's install script from downloading the CUDA
# binaries (the CPU ones ship in the package). better-sqlite3 and sharp fetch prebuilt linux-x64 glibc binaries.
COPY package.json package-lock.json .npmrc ./
# `prepare` runs the build, whose sources are not here yet: it is dropped for this step (the real package.json is
# copied back below), so this layer is reused as long as the lock file does not change.
RUN npm pkg delete scripts.prepare && npm ci
COPY package.json tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build && npm prune --omit=dev

# ---- runtime: the compiled server, production node_modules and the example models, as a non-root user ----
FROM node:20-bookworm-slim AS runtime
LABEL org.opencontainers.image.title="mlship" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid (10001, clear of the image's `node` user 1000): the Kubernetes securityContext names the same.
RUN groupadd --system --gid 10001 mlship \
    && useradd --system --uid 10001 --gid mlship --home-dir /var/lib/mlship --no-create-home --shell /usr/sbin/nologin mlship \
    && mkdir -p /var/lib/mlship \
    && chown mlship:mlship /var/lib/mlship
WORKDIR /app
ENV NODE_ENV=production \
    MLSHIP_HOME=/var/lib/mlship \
    MLSHIP_HOST=0.0.0.0 \
    MLSHIP_PORT=8080 \
    MLSHIP_GRPC_PORT=8081
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY proto ./proto
COPY examples/models ./examples/models
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
VOLUME ["/var/lib/mlship"]
EXPOSE 8080 8081
# Node's own fetch: slim images have no curl. It follows MLSHIP_PORT when a run sets another port.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.MLSHIP_PORT || '8080') + '/v2/health/live').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/mlship.js"]
CMD ["serve", "--host", "0.0.0.0"]
