import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, del, get } from '../api.js';
import { Field, Loading, Message, Select, When, useAction, useLoad } from '../ui.js';

// Members of the session's account: the list with roles, the invitation form, role changes and
// removal (owners and admins; an admin cannot touch owners; the API enforces all of it and says
// why when it refuses), and the page an invitation's emailed link opens.

const ROLES = ['owner', 'admin', 'developer', 'billing', 'viewer'];
const PASSWORD_HINT = 'At least 12 characters and not a common password; a few unrelated words work well.';

export function MembersPage({ session }) {
  const members = useLoad(() => get('/dashboard/api/members'));
  const action = useAction();
  const manages = session.permissions?.includes('members');
  const offered = session.member_role === 'owner' ? ROLES : ROLES.filter((r) => r !== 'owner');
  const [role, setRole] = useState('developer');
  const invite = async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const email = new FormData(form).get('email').trim();
    const done = await action.run(
      () => api('POST', '/dashboard/api/members/invitations', { email, role }),
      (i) => `Invitation sent to ${i.email}.`,
    );
    if (done) {
      form.reset();
      void members.reload();
    }
  };
  const changeRole = async (member, next) => {
    const done = await action.run(
      () => api('PATCH', `/dashboard/api/members/${encodeURIComponent(member.user_id)}`, { role: next }),
      `${member.name || member.email} is now ${next}.`,
    );
    void members.reload();
    return done;
  };
  const remove = async (member) => {
    const done = await action.run(
      () => del(`/dashboard/api/members/${encodeURIComponent(member.user_id)}`),
      member.you ? 'You left the account.' : `${member.name || member.email} is removed; their sessions here are signed out.`,
    );
    if (done) void members.reload();
  };
  const withdraw = async (invitation) => {
    const done = await action.run(() => del(`/dashboard/api/members/invitations/${encodeURIComponent(invitation.id)}`), 'Invitation withdrawn.');
    if (done) void members.reload();
  };
  return html`<${Message} message=${action.message} />
    <${Loading} state=${members}>${({ data, invitations }) => html`
      <table id="members-table">
        <caption>People in this account</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Since</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>${data.map(
          (m) => html`<tr key=${m.user_id} data-user-id=${m.user_id}>
            <th scope="row">${m.name}${m.you ? ' (you)' : ''}</th>
            <td>${m.email}</td>
            <td>${
              manages && !m.you && (session.member_role === 'owner' || m.role !== 'owner')
                ? html`<label class="visually-hidden" for=${`role-${m.user_id}`}>Role of ${m.name || m.email}</label>
                  <select id=${`role-${m.user_id}`} class="member-role" value=${m.role} onChange=${(e) => changeRole(m, e.currentTarget.value)}>
                    ${(m.role === 'owner' ? ROLES : offered).map((r) => html`<option value=${r} selected=${r === m.role}>${r}</option>`)}
                  </select>`
                : html`<span class="member-role">${m.role}</span>`
            }</td>
            <td><${When} at=${m.since} /></td>
            <td>${
              m.you
                ? html`<button type="button" class="secondary" onClick=${() => remove(m)}>Leave</button>`
                : manages && (session.member_role === 'owner' || m.role !== 'owner')
                  ? html`<button type="button" class="secondary remove-member" onClick=${() => remove(m)}>Remove</button>`
                  : ''
            }</td>
          </tr>`,
        )}</tbody>
      </table>
      ${
        invitations.length > 0 &&
        html`<h2>Pending invitations</h2>
        <table id="invitations-table">
          <thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Expires</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>${invitations.map(
            (i) => html`<tr key=${i.id} data-invitation-id=${i.id}><th scope="row">${i.email}</th><td>${i.role}</td><td><${When} at=${i.expires_at} /></td>
              <td>${manages ? html`<button type="button" class="secondary" onClick=${() => withdraw(i)}>Withdraw</button>` : ''}</td></tr>`,
          )}</tbody>
        </table>`
      }`}<//>
    ${
      manages &&
      html`<h2>Invite someone</h2>
      <form id="invite-form" onSubmit=${invite}>
        <${Field} label="Email" id="invite-email" name="email" type="email" autocomplete="off" required />
        <${Select} label="Role" id="invite-role" value=${role} onChange=${(e) => setRole(e.currentTarget.value)} options=${offered.map((r) => ({ value: r, label: r }))} />
        <button type="submit" disabled=${action.busy}>Send invitation</button>
      </form>
      <p><small>The invitation link works once, for 7 days.</small></p>`
    }`;
}

/** The page an invitation email's link opens: a new address chooses a name and password, a known one just accepts. */
export function AcceptInvitation({ params }) {
  const [done, setDone] = useState(null);
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const name = form.get('name').trim();
    const password = form.get('password');
    const answer = await action.run(() =>
      api(
        'POST',
        '/dashboard/api/invitations/accept',
        { token: params.get('token') ?? '', ...(name && { name }), ...(password && { password }) },
        { quiet: true },
      ),
    );
    if (answer) setDone(answer);
  };
  if (done)
    return html`<main id="main" class="page narrow"><h1>Invitation accepted</h1>
      <p id="accept-done" role="status">You joined as ${done.role}. <a href="#/">Sign in</a>${done.new_user ? ' with your new password' : ''}.</p></main>`;
  return html`<main id="main" class="page narrow"><h1>Join the account</h1>
    <form id="accept-form" onSubmit=${submit}>
      <p>New to Tollgate? Choose your name and a password. Already have a login? Leave them empty.</p>
      <${Field} label="Your name" id="accept-name" name="name" autocomplete="name" />
      <${Field} label="Password" id="accept-password" name="password" type="password" autocomplete="new-password" hint=${PASSWORD_HINT} />
      <button type="submit" disabled=${action.busy}>Accept the invitation</button>
    </form>
    <${Message} message=${action.message} />
  </main>`;
}
