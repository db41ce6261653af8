import { dirname, join } from 'node:path';
import type { Router } from 'express';
import { ApiError } from '../openai/errors';
import { openApiDocument } from './document';

/**
 * GET /openapi.json: the OpenAPI 3.1 document (document.ts).
 * GET /docs: a reference page rendered by Swagger UI, served from node_modules (swagger-ui-dist),
 * never a CDN. The page and its start-up script are the gateway's own files, so the CSP allows
 * only the gateway's scripts: no inline script, no eval, no other origin. Swagger UI sets inline
 * styles and uses data: images for its icons, which the CSP allows (styles and images only).
 */

const SWAGGER_UI_DIR = dirname(require.resolve('swagger-ui-dist/package.json'));

/** The files of swagger-ui-dist the page loads. */
const ASSETS: Record<string, { file: string; type: string }> = {
  'swagger-ui-bundle.js': { file: join(SWAGGER_UI_DIR, 'swagger-ui-bundle.js'), type: 'text/javascript' },
  'swagger-ui.css': { file: join(SWAGGER_UI_DIR, 'swagger-ui.css'), type: 'text/css' },
  'favicon-32x32.png': { file: join(SWAGGER_UI_DIR, 'favicon-32x32.png'), type: 'image/png' },
};

export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tollgate API reference</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/start.js"></script>
</body>
</html>
`;

// validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
const START = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  defaultModelsExpandDepth: 0,
  presets: [SwaggerUIBundle.presets.apis],
});
`;

export function mountOpenApiRoutes(router: Router): void {
  router.get('/openapi.json', (_req, res) => {
    res.set('cache-control', 'no-cache').json(openApiDocument());
  });

  router.get('/docs', (_req, res) => {
    res.set({ 'content-security-policy': DOCS_CSP, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin' });
    res.type('html').send(PAGE);
  });

  router.get('/docs/assets/start.js', (_req, res) => {
    res.set({ 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' }).type('text/javascript').send(START);
  });

  router.get('/docs/assets/:file', (req, res) => {
    const asset = ASSETS[String(req.params['file'])];
    if (!asset) throw new ApiError(404, 'invalid_request_error', 'not_found', null, 'No such file.');
    res.sendFile(asset.file, { headers: { 'cache-control': 'public, max-age=86400', 'content-type': asset.type, 'x-content-type-options': 'nosniff' } });
  });
}
