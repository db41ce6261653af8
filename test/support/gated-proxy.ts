import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a real upstream that lets the first `passEvents` server-sent events
 * of its answers through and holds the rest back until `release()`. A test then decides when an
 * upstream's stream goes on, instead of racing the upstream's pace: "the gateway hung up while
 * the rest of the answer was still held" proves the upstream request was cancelled mid-answer,
 * and "the client had the first events while the rest was held" proves they were relayed as
 * they came, on a machine of any speed.
 *
 * Events are counted across all connections (a gate is meant for one request at a time); an
 * event ends at a blank line ("\n\n"), which HTTP framing (CRLF) never contains.
 */
export interface GatedProxy {
  /** The upstream's base URL with the proxy's origin, e.g. http://127.0.0.1:40000/v1 */
  readonly baseUrl: string;
  /** Events let through so far. */
  passed(): number;
  /** True while the gate holds something back (the passed events are out, the rest is not). */
  holding(): boolean;
  /** Resolves when a client hung up while the gate was holding: the request was cancelled mid-answer. */
  readonly hungUpWhileHeld: Promise<void>;
  /** Lets everything through from now on, what was held first. */
  release(): void;
  close(): Promise<void>;
}

export async function startGatedProxy(targetBaseUrl: string, passEvents: number): Promise<GatedProxy> {
  const target = new URL(targetBaseUrl);
  let passed = 0;
  let released = false;
  let hungUp!: () => void;
  const hungUpWhileHeld = new Promise<void>((resolve) => (hungUp = resolve));
  const releases = new Set<() => void>();
  const sockets = new Set<Socket>();
  const gateClosed = () => !released && passed >= passEvents;

  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => undefined); // a hang-up is what the tests look for, not a failure
    }
    client.pipe(upstream);
    const held: Buffer[] = [];
    let upstreamEnded = false;
    let lastWasNewline = false;

    const flush = () => {
      for (const part of held.splice(0)) client.write(part);
      if (upstreamEnded) client.end();
    };
    releases.add(flush);

    upstream.on('data', (data: Buffer) => {
      if (!gateClosed()) {
        // Let bytes through up to the end of the last event allowed, hold the rest.
        let cut = data.length;
        for (let i = 0; i < data.length; i++) {
          const newline = data[i] === 0x0a;
          if (newline && lastWasNewline) {
            lastWasNewline = false; // an event ended; the next starts after this byte
            if (++passed >= passEvents && !released) {
              cut = i + 1;
              break;
            }
            continue;
          }
          lastWasNewline = newline;
        }
        client.write(data.subarray(0, cut));
        if (cut === data.length) return;
        data = data.subarray(cut);
      }
      if (released) {
        client.write(data);
        return;
      }
      held.push(data);
    });
    upstream.on('end', () => {
      upstreamEnded = true;
      if (!gateClosed()) client.end();
    });
    client.on('close', () => {
      if (gateClosed()) hungUp();
      releases.delete(flush);
      upstream.destroy();
    });
    upstream.on('close', () => {
      if (!gateClosed() && !upstreamEnded) client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    baseUrl: `${target.protocol}//127.0.0.1:${port}${target.pathname}`,
    passed: () => passed,
    holding: () => gateClosed(),
    hungUpWhileHeld,
    release() {
      released = true;
      for (const flush of releases) flush();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
