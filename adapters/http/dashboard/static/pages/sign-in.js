import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { Field, Message, useAction } from '../ui.js';

/** Sign-in with an account key or the admin key; the key goes to the server once, never to storage. */
export function SignIn({ onSignedIn }) {
  const [key, setKey] = useState('');
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    // Sent once, as the Bearer token of the sign-in call; the answer sets the session cookie.
    const session = await action.run(() =>
      api('POST', '/dashboard/api/session', undefined, { quiet: true, headers: { authorization: `Bearer ${key.trim()}` } }),
    );
    setKey('');
    if (session) onSignedIn(session);
  };
  return html`<main id="main" class="page narrow">
    <h1>Sign in to Tollgate</h1>
    <p>Use an API key of your account (with the account_read scope), or the admin key. The key is exchanged for a session cookie and is not stored in this browser.</p>
    <form onSubmit=${submit}>
      <${Field} label="API key" id="sign-in-key" type="password" autocomplete="off" required value=${key} onInput=${(e) => setKey(e.currentTarget.value)} />
      <button type="submit" disabled=${action.busy}>Sign in</button>
    </form>
    <${Message} message=${action.message} />
    <p><a href="/dashboard/pricing">See prices</a></p>
  </main>`;
}
