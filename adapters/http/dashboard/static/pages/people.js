import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, del, get, post } from '../api.js';
import { Field, Loading, Message, When, useAction, useLoad } from '../ui.js';

// People's pages: sign-up, email confirmation, password sign-in (with two-factor), forgotten
// and reset passwords, the profile (name, email, password, two-factor) and the sessions list.
// Tokens from emailed links arrive after the '#' (never sent to a server by the browser) and are
// posted once to the API.

const PASSWORD_HINT = 'At least 12 characters and not a common password; a few unrelated words work well.';

function Page({ title, children }) {
  return html`<main id="main" class="page narrow"><h1>${title}</h1>${children}</main>`;
}

/** The person's sign-in; `operator` words it for admin users (the same sign-in: their role decides what they reach). */
export function PasswordSignIn({ onSignedIn, operator = false }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [twoFactor, setTwoFactor] = useState(false);
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const session = await action.run(() => api('POST', '/dashboard/api/sign-in', { email: email.trim(), password }, { quiet: true }));
    setPassword('');
    if (!session) return;
    if (session.two_factor_required) setTwoFactor(true);
    else onSignedIn(session);
  };
  const submitCode = async (event) => {
    event.preventDefault();
    const session = await action.run(() => api('POST', '/dashboard/api/sign-in/two-factor', { code: code.trim() }, { quiet: true }));
    setCode('');
    if (session) onSignedIn(session);
  };
  if (twoFactor) {
    return html`<${Page} title="Two-factor authentication">
      <p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>
      <form onSubmit=${submitCode}>
        <${Field} label="Code" id="two-factor-code" autocomplete="one-time-code" required value=${code} onInput=${(e) => setCode(e.currentTarget.value)} />
        <button type="submit" disabled=${action.busy}>Continue</button>
      </form>
      <${Message} message=${action.message} />
    <//>`;
  }
  return html`<${Page} title=${operator ? 'Operator sign-in' : 'Sign in to Tollgate'}>
    ${operator && html`<p>For Tollgate's staff with an operator, finance or compliance role. You reach the admin pages your role allows.</p>`}
    <form onSubmit=${submit}>
      <${Field} label="Email" id="sign-in-email" type="email" autocomplete="username" required value=${email} onInput=${(e) => setEmail(e.currentTarget.value)} />
      <${Field} label="Password" id="sign-in-password" type="password" autocomplete="current-password" required value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} />
      <button type="submit" disabled=${action.busy}>Sign in</button>
    </form>
    <${Message} message=${action.message} />
    ${
      operator
        ? html`<p><a href="#/forgot">Forgot your password?</a> · <a href="#/key-sign-in">Sign in with the admin key</a> (first set-up, scripts) · <a href="#/">Customer sign-in</a></p>`
        : html`<p><a href="#/sign-up">Create an account</a> · <a href="#/forgot">Forgot your password?</a> · <a href="#/key-sign-in">Sign in with an API key</a> (scripts) · <a href="#/admin-sign-in">Operator sign-in</a></p>`
    }
    <p><a href="/dashboard/pricing">See prices</a></p>
  <//>`;
}

export function SignUp() {
  const [form, setForm] = useState({ email: '', name: '', organisation: '', password: '' });
  const [done, setDone] = useState(false);
  const action = useAction();
  const set = (field) => (e) => setForm({ ...form, [field]: e.currentTarget.value });
  const submit = async (event) => {
    event.preventDefault();
    const answer = await action.run(() => api('POST', '/dashboard/api/sign-up', { ...form, email: form.email.trim() }, { quiet: true }));
    if (answer) setDone(true);
  };
  if (done) {
    return html`<${Page} title="Check your email">
      <p id="sign-up-done" role="status">If this address can be used, a confirmation link is on its way to ${form.email.trim()}. It is valid for 24 hours.</p>
      <p><a href="#/">Sign in</a></p>
    <//>`;
  }
  return html`<${Page} title="Create your Tollgate account">
    <form onSubmit=${submit}>
      <${Field} label="Email" id="sign-up-email" type="email" autocomplete="email" required value=${form.email} onInput=${set('email')} />
      <${Field} label="Your name" id="sign-up-name" autocomplete="name" required value=${form.name} onInput=${set('name')} />
      <${Field} label="Organisation" id="sign-up-organisation" autocomplete="organization" required value=${form.organisation} onInput=${set('organisation')} hint="The account you open, which you will own." />
      <${Field} label="Password" id="sign-up-password" type="password" autocomplete="new-password" required minlength="12" value=${form.password} onInput=${set('password')} hint=${PASSWORD_HINT} />
      <button type="submit" disabled=${action.busy}>Create account</button>
    </form>
    <${Message} message=${action.message} />
    <p><a href="#/">I already have an account</a></p>
  <//>`;
}

export function VerifyEmail({ params, signedIn }) {
  const [state, setState] = useState('ready');
  const action = useAction();
  const confirm = async () => {
    const answer = await action.run(() => api('POST', '/dashboard/api/verify-email', { token: params.get('token') ?? '' }, { quiet: true }));
    if (answer) setState('done');
  };
  return html`<${Page} title="Confirm your email address">
    ${
      state === 'done'
        ? html`<p id="verify-done" role="status">Your email address is confirmed.</p><p><a href="#/">${signedIn ? 'Back to the dashboard' : 'Sign in'}</a></p>`
        : html`<p>Confirm the address this link was sent to.</p><button type="button" id="verify-confirm" onClick=${confirm} disabled=${action.busy}>Confirm my email address</button>`
    }
    <${Message} message=${action.message} />
  <//>`;
}

export function ForgotPassword() {
  const [email, setEmail] = useState('');
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    await action.run(
      () => api('POST', '/dashboard/api/forgot-password', { email: email.trim() }, { quiet: true }),
      'If this address has an account, a reset link is on its way. It is valid for 1 hour.',
    );
  };
  return html`<${Page} title="Forgot your password?">
    <form onSubmit=${submit}>
      <${Field} label="Email" id="forgot-email" type="email" autocomplete="email" required value=${email} onInput=${(e) => setEmail(e.currentTarget.value)} />
      <button type="submit" disabled=${action.busy}>Send me a reset link</button>
    </form>
    <${Message} message=${action.message} />
    <p><a href="#/">Sign in</a></p>
  <//>`;
}

export function ResetPassword({ params }) {
  const [password, setPassword] = useState('');
  const [done, setDone] = useState(false);
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const answer = await action.run(() => api('POST', '/dashboard/api/reset-password', { token: params.get('token') ?? '', password }, { quiet: true }));
    setPassword('');
    if (answer) setDone(true);
  };
  if (done)
    return html`<${Page} title="Password changed"><p id="reset-done" role="status">Your password is changed and every session signed out. <a href="#/">Sign in</a> with the new one.</p><//>`;
  return html`<${Page} title="Choose a new password">
    <form onSubmit=${submit}>
      <${Field} label="New password" id="reset-password" type="password" autocomplete="new-password" required value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} hint=${PASSWORD_HINT} />
      <button type="submit" disabled=${action.busy}>Change password</button>
    </form>
    <${Message} message=${action.message} />
  <//>`;
}

export function ProfilePage() {
  const me = useLoad(() => get('/dashboard/api/me'));
  const action = useAction();
  const [enrolment, setEnrolment] = useState(null);
  const [codes, setCodes] = useState(null);
  const saveProfile = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const answer = await action.run(
      () => api('PATCH', '/dashboard/api/me', { name: form.get('name').trim(), email: form.get('email').trim() }),
      (p) => (p.email_change_pending ? `Saved. Open the link sent to ${p.pending_email} to switch to that address.` : 'Saved.'),
    );
    if (answer) void me.reload();
  };
  const changePassword = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const done = await action.run(
      () => post('/dashboard/api/me/password', { current_password: form.get('current'), new_password: form.get('next') }),
      'Password changed; your other sessions are signed out.',
    );
    if (done) event.currentTarget?.reset?.();
  };
  const startTwoFactor = async () => setEnrolment((await action.run(() => post('/dashboard/api/me/two-factor'))) ?? null);
  const confirmTwoFactor = async (event) => {
    event.preventDefault();
    const answer = await action.run(
      () => post('/dashboard/api/me/two-factor/confirm', { code: new FormData(event.currentTarget).get('code').trim() }),
      'Two-factor authentication is on.',
    );
    if (answer) {
      setEnrolment(null);
      setCodes(answer.recovery_codes);
      void me.reload();
    }
  };
  const resend = () => action.run(() => post('/dashboard/api/me/resend-verification'), 'A new confirmation link is on its way.');
  const [closure, setClosure] = useState(null);
  const downloadExport = async () => {
    // A link to the route would not carry the X-Tollgate-Dashboard header: fetch, then save the answer as a file.
    const response = await action.run(() => get('/dashboard/api/me/export', { raw: true }));
    if (!response) return;
    const name = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '')?.[1] ?? 'tollgate-export.json';
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };
  const closeAccount = async () => {
    if (!window.confirm('Close this account? Open requests must end first; purchased credit is refunded and every key is revoked. This cannot be undone.'))
      return;
    const answer = await action.run(() => post('/v1/account/close'), 'The account is closed.');
    if (answer) setClosure(answer);
  };
  const deleteMe = async (event) => {
    event.preventDefault();
    const done = await action.run(() => del('/dashboard/api/me', { password: new FormData(event.currentTarget).get('password') }));
    if (done) {
      window.location.hash = '#/sign-in';
      window.location.reload();
    }
  };
  return html`<${Loading} state=${me}>${(p) => html`
    <${Message} message=${action.message} />
    ${!p.email_verified && html`<p class="notice error" id="unverified">Your email address is not confirmed yet: keys and credit wait for it. <button type="button" class="secondary" onClick=${resend}>Send the link again</button></p>`}
    <section aria-labelledby="profile-heading">
      <h2 id="profile-heading">Name and email</h2>
      <form onSubmit=${saveProfile}>
        <${Field} label="Name" id="profile-name" name="name" required value=${p.name} />
        <${Field} label="Email" id="profile-email" name="email" type="email" required value=${p.email} hint=${p.pending_email ? `Waiting for confirmation: ${p.pending_email}` : 'A new address is used once you open the link sent to it.'} />
        <button type="submit" disabled=${action.busy}>Save</button>
      </form>
    </section>
    <section aria-labelledby="password-heading">
      <h2 id="password-heading">Password</h2>
      <form onSubmit=${changePassword}>
        <${Field} label="Current password" id="password-current" name="current" type="password" autocomplete="current-password" required />
        <${Field} label="New password" id="password-next" name="next" type="password" autocomplete="new-password" required hint=${PASSWORD_HINT} />
        <button type="submit" disabled=${action.busy}>Change password</button>
      </form>
    </section>
    <section aria-labelledby="two-factor-heading">
      <h2 id="two-factor-heading">Two-factor authentication</h2>
      <p id="two-factor-state">${p.two_factor_enabled ? 'On: signing in asks for a code from your authenticator app.' : 'Off.'}</p>
      ${!p.two_factor_enabled && !enrolment && html`<button type="button" id="two-factor-start" onClick=${startTwoFactor}>Turn on two-factor authentication</button>`}
      ${
        enrolment &&
        html`<div>
        <p>Add this key to your authenticator app (or open the link on your phone), then enter the code it shows.</p>
        <p><code id="two-factor-secret">${enrolment.secret}</code></p>
        <p><a href=${enrolment.otpauth_uri}>Open in an authenticator app</a></p>
        <form onSubmit=${confirmTwoFactor}>
          <${Field} label="Code from the app" id="two-factor-confirm-code" name="code" autocomplete="one-time-code" required />
          <button type="submit" disabled=${action.busy}>Turn on</button>
        </form>
      </div>`
      }
      ${
        codes &&
        html`<div class="secret"><p><strong>Recovery codes: store them now, they are shown only once.</strong> Each works once if you lose your device.</p>
        <ul id="recovery-codes">${codes.map((c) => html`<li><code>${c}</code></li>`)}</ul></div>`
      }
    </section>
    <section aria-labelledby="data-heading">
      <h2 id="data-heading">Your data</h2>
      <p>A JSON file of everything Tollgate holds about you${p.memberships.some((m) => m.account_id === p.current_account_id && m.role === 'owner') ? ' and about this account' : ''}.</p>
      <button type="button" id="export-download" class="secondary" disabled=${action.busy} onClick=${downloadExport}>Download my data</button>
    </section>
    ${
      p.memberships.some((m) => m.account_id === p.current_account_id && m.role === 'owner') &&
      html`<section aria-labelledby="close-heading">
      <h2 id="close-heading">Close and delete this account</h2>
      <p>Open requests must end first. Purchased credit is refunded to the cards it came from, every key is revoked, and the account's personal data (and that of members in no other account) is erased 30 days later.</p>
      ${
        closure
          ? html`<p class="notice" id="closure-scheduled">Closed. Personal data will be erased on <time datetime=${closure.personal_data_erase_due_at}>${new Date(closure.personal_data_erase_due_at).toUTCString()}</time>.</p>`
          : html`<button type="button" id="account-close" class="danger" disabled=${action.busy} onClick=${closeAccount}>Close and delete the account</button>`
      }
    </section>`
    }
    <section aria-labelledby="delete-me-heading">
      <h2 id="delete-me-heading">Delete yourself</h2>
      <p>Your name, email, password and sessions are erased at once and you leave every account. Not possible while you are the only owner of an open account.</p>
      <form onSubmit=${deleteMe}>
        <${Field} label="Password to confirm" id="delete-me-password" name="password" type="password" autocomplete="current-password" required />
        <button type="submit" class="danger" disabled=${action.busy}>Delete me</button>
      </form>
    </section>
  `}<//>`;
}

export function SessionsPage() {
  const sessions = useLoad(() => get('/dashboard/api/me/sessions'));
  const action = useAction();
  const revoke = async (s) => {
    const done = await action.run(() => del(`/dashboard/api/me/sessions/${encodeURIComponent(s.id)}`), 'That session is signed out.');
    if (done) void sessions.reload();
  };
  return html`<${Message} message=${action.message} />
    <${Loading} state=${sessions}>${({ data }) => html`<table id="sessions-table">
      <thead><tr><th scope="col">Browser</th><th scope="col">Signed in</th><th scope="col">Last used</th><th scope="col">Ends at the latest</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${data.map(
        (s) => html`<tr key=${s.id} data-session-id=${s.id}>
        <th scope="row">${s.user_agent ?? 'unknown'}${s.current ? ' (this session)' : ''}</th>
        <td><${When} at=${s.created_at} /></td><td><${When} at=${s.last_seen_at} /></td><td><${When} at=${s.absolute_expires_at} /></td>
        <td>${s.current ? '' : html`<button type="button" class="secondary" onClick=${() => revoke(s)}>Sign out</button>`}</td>
      </tr>`,
      )}</tbody>
    </table>`}<//>`;
}
