import { signIn } from "../api";
import { field, h, input, replace } from "../dom";
import { act, navigate } from "../ui";
import type { Screen } from "../screen";

export const signInScreen: Screen = async (main, _params, query) => {
  const tenant = input("tenant", { value: query.get("tenant") ?? "demo-city", required: true, autocomplete: "organization" });
  const email = input("email", { type: "email", required: true, autocomplete: "username" });
  const password = input("password", { type: "password", required: true, autocomplete: "current-password" });
  const submit = h("button", { class: "primary", testid: "sign-in", attrs: { type: "submit" } }, "Sign in");
  const form = h(
    "form",
    { class: "signin", testid: "sign-in-form" },
    h("h1", null, "e-Money back office"),
    h("p", { class: "muted" }, "For operators and tenant administrators."),
    field("Organisation", tenant, "The tenant's short name, for example demo-city"),
    field("E-mail", email),
    field("Password", password),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await act(form, () => signIn(tenant.value, email.value, password.value));
    if (ok) navigate("#/");
    else password.select();
  });
  replace(main, form);
  (email.value ? password : email).focus();
};
