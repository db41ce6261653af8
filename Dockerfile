FROM node:20-bookworm-slim
WORKDIR /app
# The sources first: npm ci runs `prepare`, which compiles them to dist/.
COPY . .
RUN npm ci --no-audit --no-fund
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
CMD ["npm", "start"]
