import type { Logger } from 'pino';
import type { Worker } from '../instances/lease';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';
import { ABANDON_REGISTRATION_AFTER_MS, type Identity } from './identity';

export { ABANDON_REGISTRATION_AFTER_MS };

/**
 * The background worker that finishes identity commands a crash interrupted (Identity.reconcile):
 * sign-ups and invitees' logins, accepted invitations' memberships, self-deletions. It runs at
 * once when the workers start (a restart finishes what the last process left), then every
 * `intervalMs`. Every step it takes is idempotent, so running beside live requests, or on two
 * instances during a hand-over, does nothing twice.
 */
export class IdentityReconciler implements Worker {
  private loop: PollLoop | undefined;

  constructor(
    private readonly identity: Identity,
    private readonly log: Logger,
    private readonly options: { readonly intervalMs: number; readonly abandonAfterMs?: number },
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.pass(), {
      intervalMs: this.options.intervalMs,
      onError: (error) =>
        this.log.error(
          { err: { name: (error as Error).name, message: (error as Error).message } },
          'identity reconciliation failed; retrying at the next pass',
        ),
    });
    void this.loop.runNow();
  }

  /** One pass now (or the running one); resolves when it ends. */
  runNow(): Promise<void> {
    return this.loop?.runNow() ?? Promise.resolve();
  }

  private async pass(): Promise<void> {
    const done = await this.identity.reconcile({ abandonAfterMs: this.options.abandonAfterMs ?? ABANDON_REGISTRATION_AFTER_MS });
    if (done.completed + done.abandoned + done.invitations + done.deletions > 0) this.log.info(done, 'identity: finished commands a crash had interrupted');
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }
}
