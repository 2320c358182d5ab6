// The back office: a single page with hash routes (#/accounts/…), so Envoy serves a fixed set of files.
import { Role } from "../../generated/ts/emoney/auth/v1/auth_pb";
import { auth, currentSession, onSignedOut, signOut } from "./api";
import { h, link, replace } from "./dom";
import { applyLanguage, languageSwitch, onLanguageChange, t, type Catalogue } from "./i18n";
import { clearMessages, navigate, say, setMessageArea, showError, takePendingMessage } from "./ui";
import { accountScreen, accountsScreen } from "./screens/accounts";
import { auditScreen, reconciliationScreen } from "./screens/checks";
import { dashboardScreen } from "./screens/dashboard";
import { levelsScreen } from "./screens/levels";
import { liveScreen } from "./screens/live";
import { paymentScreen, paymentsScreen } from "./screens/payments";
import { peopleScreen, personScreen } from "./screens/people";
import { signInScreen } from "./screens/signin";
import { terminalsScreen } from "./screens/terminals";
import type { Screen } from "./screen";

const ROUTES: [RegExp, Screen][] = [
  [/^\/$/, dashboardScreen],
  [/^\/customers$/, peopleScreen(Role.CUSTOMER)],
  [/^\/merchants$/, peopleScreen(Role.MERCHANT)],
  [/^\/users\/([\w-]+)$/, personScreen],
  [/^\/accounts$/, accountsScreen],
  [/^\/accounts\/([\w-]+)$/, accountScreen],
  [/^\/payments$/, paymentsScreen],
  [/^\/payments\/([\w-]+)$/, paymentScreen],
  [/^\/terminals$/, terminalsScreen],
  [/^\/levels$/, levelsScreen],
  [/^\/audit$/, auditScreen],
  [/^\/reconciliation$/, reconciliationScreen],
  [/^\/live$/, liveScreen],
];

const NAVIGATION: [string, keyof Catalogue["nav"]][] = [
  ["#/", "dashboard"],
  ["#/customers", "customers"],
  ["#/merchants", "merchants"],
  ["#/accounts", "accounts"],
  ["#/payments", "payments"],
  ["#/live", "live"],
  ["#/terminals", "terminals"],
  ["#/levels", "levels"],
  ["#/audit", "audit"],
  ["#/reconciliation", "reconciliation"],
];

const root = document.getElementById("app")!;
const messages = h("div", { class: "messages", testid: "messages" });
setMessageArea(messages);
let leave: (() => void) | void = undefined;
let generation = 0;
let tenantName = "";

function layout(main: HTMLElement, path: string): HTMLElement {
  const session = currentSession()!;
  const signOutButton = h("button", { class: "link-button", testid: "sign-out" }, t().session.signOut);
  signOutButton.addEventListener("click", async () => {
    await signOut();
    navigate("#/signin", { kind: "notice", text: t().session.signedOut });
  });
  const nav = h(
    "nav",
    { class: "nav", testid: "navigation" },
    NAVIGATION.map(([href, key]) => {
      const anchor = link(href, t().nav[key]);
      const section = "/" + (path.split("/")[1] ?? "");
      if (href.slice(1) === section || (section === "/users" && href === "#/customers")) anchor.className = "active";
      return anchor;
    }),
  );
  return h(
    "div",
    { class: "shell" },
    h(
      "header",
      { class: "top" },
      h("div", { class: "brand" }, "e-Money", h("span", null, tenantName || session.tenant.replace("tenants/", ""))),
      h("div", { class: "who", testid: "who" }, session.user.displayName, h("small", null, session.user.email), languageSwitch(), signOutButton),
    ),
    nav,
    h("div", { class: "content" }, messages, main),
  );
}

async function route(): Promise<void> {
  const current = ++generation;
  if (leave) leave();
  leave = undefined;
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, queryText] = hash.split("?", 2);
  const query = new URLSearchParams(queryText ?? "");
  const main = h("main", { testid: "main" });
  const pending = takePendingMessage();
  if (pending) say(pending.kind, pending.text);
  if (!currentSession() || path === "/signin") {
    if (currentSession() && path === "/signin") {
      window.location.hash = "#/";
      return;
    }
    tenantName = "";
    replace(root, h("div", { class: "signin-shell" }, h("div", { class: "signin-top" }, languageSwitch()), messages, main));
    leave = await signInScreen(main, [], query);
    return;
  }
  const found = ROUTES.map(([pattern, screen]) => [pattern.exec(path), screen] as const).find(([match]) => match);
  await loadTenantName();
  if (current !== generation) return;
  replace(root, layout(main, path));
  if (!found) {
    replace(main, h("h1", null, t().app.notFound), h("p", null, t().app.noSuchPage, " ", link("#/", t().app.goToDashboard)));
    return;
  }
  const [match, screen] = found;
  try {
    const cleanup = await screen(main, match!.slice(1), query);
    if (current === generation) leave = cleanup;
    else if (cleanup) cleanup();
  } catch (error) {
    if (current === generation) showError(error);
  }
}

onSignedOut((reason) => navigate("#/signin", { kind: "error", text: reason }));

window.addEventListener("hashchange", () => {
  clearMessages();
  void route();
});

// A new language redraws the current screen in it (what was typed into its forms is not kept).
onLanguageChange(() => {
  clearMessages();
  void route();
});

/** The tenant's display name for the header (public GetTenant), looked up once per sign-in. */
async function loadTenantName(): Promise<void> {
  const session = currentSession();
  if (!session || tenantName) return;
  try {
    tenantName = (await auth.getTenant({ name: session.tenant })).tenant?.displayName ?? "";
  } catch {
    tenantName = "";
  }
}

applyLanguage();
void route();
