import { html, render } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, get, onSignedOut } from './api.js';
import { useLoad } from './ui.js';
import { SignIn } from './pages/sign-in.js';
import { AccountBanner, BalancePage } from './pages/balance.js';
import { UsagePage } from './pages/usage.js';
import { KeysPage } from './pages/keys.js';
import { BillingPage } from './pages/billing.js';
import { AccountsPage } from './pages/admin-accounts.js';
import { ModelsPage } from './pages/admin-models.js';
import { AuditPage } from './pages/admin-audit.js';
import { RetentionPage } from './pages/admin-retention.js';
import { StatusPage } from './pages/admin-status.js';
import { FinancePage } from './pages/admin-finance.js';
import { ExportPage } from './pages/admin-export.js';
import { AdminUsersPage } from './pages/admin-users.js';
import { NoticesBanner, NoticesPage } from './pages/notices.js';
import { AcceptInvitation, MembersPage } from './pages/members.js';
import { ForgotPassword, PasswordSignIn, ProfilePage, ResetPassword, SessionsPage, SignUp, VerifyEmail } from './pages/people.js';

const CUSTOMER_PAGES = [
  { path: 'balance', title: 'Balance', page: BalancePage },
  { path: 'usage', title: 'Usage', page: UsagePage },
  { path: 'keys', title: 'API keys', page: KeysPage },
  { path: 'billing', title: 'Billing', page: BillingPage },
  { path: 'notices', title: 'Notices', page: NoticesPage },
];
/** Only for a person signed in with a password. */
const PERSON_PAGES = [
  { path: 'profile', title: 'Profile', page: ProfilePage },
  { path: 'members', title: 'Members', page: MembersPage },
  { path: 'sessions', title: 'Sessions', page: SessionsPage },
];
const ACCOUNTS = { path: 'accounts', title: 'Accounts', page: AccountsPage };
const MODELS = { path: 'models', title: 'Models and prices', page: ModelsPage };
const AUDIT = { path: 'audit', title: 'Audit log', page: AuditPage };
const RETENTION = { path: 'retention', title: 'Retention', page: RetentionPage };
const STATUS = { path: 'status', title: 'Status', page: StatusPage };
const FINANCE = { path: 'finance', title: 'Finance', page: FinancePage };
const EXPORT = { path: 'export', title: 'Data export', page: ExportPage };
const ADMIN_USERS = { path: 'admin-users', title: 'Admin users', page: AdminUsersPage };
/** The bootstrap admin key (or a key issued with it) reaches everything. */
const ADMIN_PAGES = [ACCOUNTS, MODELS, AUDIT, RETENTION, STATUS, FINANCE, EXPORT, ADMIN_USERS];
/** An admin user (a person) sees the pages of their operator role (domain/admin-roles: adminRoleAllows). */
const ROLE_PAGES = {
  operator: [ACCOUNTS, MODELS, STATUS, FINANCE, ADMIN_USERS],
  finance: [FINANCE],
  compliance: [ACCOUNTS, AUDIT, RETENTION, EXPORT],
};
const OPERATOR_PERSON_PAGES = PERSON_PAGES.filter((p) => p.path !== 'members');

function pagesOf(session) {
  if (session?.role === 'admin') return ADMIN_PAGES;
  if (session?.kind !== 'user') return CUSTOMER_PAGES;
  if (session.admin_role) {
    // An operator who also belongs to an account sees that account's pages too.
    const customer = session.account_id ? [...CUSTOMER_PAGES, ...PERSON_PAGES] : OPERATOR_PERSON_PAGES;
    return [...ROLE_PAGES[session.admin_role], ...customer];
  }
  return [...CUSTOMER_PAGES, ...PERSON_PAGES];
}

/** "#/billing?top_up=success" to { path: 'billing', params }. */
function parseHash() {
  const [path, search = ''] = location.hash.replace(/^#\/?/, '').split('?');
  return { path, params: new URLSearchParams(search) };
}

function useHash() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const update = () => setRoute(parseHash());
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return route;
}

function App() {
  const [session, setSession] = useState(undefined);
  const route = useHash();
  const heading = useRef(null);

  useEffect(() => {
    api('GET', '/dashboard/api/session', undefined, { quiet: true }).then(
      (s) => setSession(s.signed_in ? s : null),
      () => setSession(null),
    );
    return onSignedOut(() => setSession(null));
  }, []);

  const pages = pagesOf(session);
  const current = pages.find((p) => p.path === route.path) ?? pages[0];

  useEffect(() => {
    if (!session) return;
    document.title = `${current.title} · Tollgate`;
    // Focus moves to the new page's heading, so keyboard and screen-reader users land on it.
    heading.current?.focus();
  }, [session, current]);

  if (session === undefined) return html`<main class="page"><p role="status">Loading…</p></main>`;
  // Links from emails work signed in or not.
  if (route.path === 'verify') return html`<${VerifyEmail} params=${route.params} signedIn=${session !== null} />`;
  if (route.path === 'accept-invitation') return html`<${AcceptInvitation} params=${route.params} />`;
  if (session === null) {
    const signedIn = (s) => {
      setSession(s);
      location.hash = '';
    };
    if (route.path === 'sign-up') return html`<${SignUp} />`;
    if (route.path === 'forgot') return html`<${ForgotPassword} />`;
    if (route.path === 'reset') return html`<${ResetPassword} params=${route.params} />`;
    if (route.path === 'key-sign-in') return html`<${SignIn} onSignedIn=${signedIn} />`;
    if (route.path === 'admin-sign-in') return html`<${PasswordSignIn} onSignedIn=${signedIn} operator=${true} />`;
    return html`<${PasswordSignIn} onSignedIn=${signedIn} />`;
  }

  const signOut = async () => {
    await api('DELETE', '/dashboard/api/session', undefined, { quiet: true }).catch(() => {});
    setSession(null);
    location.hash = '';
  };

  const Page = current.page;
  // An admin user who belongs to no account has no account to show a banner for.
  const customer = session.role === 'customer' && !(session.admin_role && !session.account_id);
  return html`
    <a class="skip" href="#main" onClick=${(e) => {
      e.preventDefault();
      heading.current?.focus();
    }}>Skip to content</a>
    <header class="topbar">
      <a class="brand" href="#/">Tollgate</a>
      <nav aria-label="Dashboard">
        <ul>
          ${pages.map((p) => html`<li><a href=${`#/${p.path}`} aria-current=${p === current ? 'page' : undefined}>${p.title}</a></li>`)}
          <li><a href="/dashboard/pricing">Pricing</a></li>
        </ul>
      </nav>
      <div class="who">
        <span id="who">${
          session.role === 'admin'
            ? `Admin · key ${session.prefix}`
            : session.admin_role
              ? `Operator · ${session.admin_role}`
              : session.kind === 'user'
                ? `Account ${session.account_id ?? '—'} · ${session.member_role ?? 'no role'}`
                : `Account ${session.account_id} · key ${session.prefix}`
        }</span>
        <button type="button" class="secondary" onClick=${signOut}>Sign out</button>
      </div>
    </header>
    <main id="main" class="page">
      <h1 tabindex="-1" ref=${heading}>${current.title}</h1>
      ${customer && html`<${CustomerBanner} key=${`banner-${current.path}`} />`}
      ${customer && html`<${NoticesBanner} key=${`notices-${current.path}`} />`}
      <${Page} session=${session} params=${route.params} key=${current.path} />
    </main>`;
}

/** On every customer page: why the account cannot spend, if it cannot. */
function CustomerBanner() {
  const account = useLoad(() => get('/v1/account'));
  return account.data ? html`<${AccountBanner} account=${account.data} />` : null;
}

render(html`<${App} />`, document.getElementById('app'));
