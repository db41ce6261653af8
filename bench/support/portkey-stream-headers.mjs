// Preloaded into @portkey-ai/gateway for the benchmark (node --import this-file start-server.js).
//
// Portkey 1.15.2 on the @hono/node-server installed here (1.19) answers every streamed chat
// completion with HTTP 500: it appends x-portkey-* headers to the upstream's fetch() Response,
// whose headers are immutable per the fetch spec ("TypeError: immutable"; Portkey-AI/gateway
// issues #1389 and #1550, fix proposed in PR #1551 by copying the response). This does the same
// copy, only for event streams, so non-streaming requests take Portkey's unmodified path.
const originalFetch = globalThis.fetch;
globalThis.fetch = async function fetchWithMutableStreamHeaders(input, init) {
  const response = await originalFetch(input, init);
  if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) return response;
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers: new Headers(response.headers) });
};
