/** The admin-token dialog, the confirmation dialog and the action runner (confirm -> request -> result). */

import { actionsDisabledReason, describeError, getToken, sendJson, setToken, ApiError } from "./api.js";
import { h, replace, type Child } from "./dom.js";

function modal(testid: string, label: string): HTMLDialogElement {
  const dialog = h("dialog", { "data-testid": testid, "aria-label": label, class: "dialog" });
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());
  return dialog;
}

/** Opens the token dialog; `onChange` runs after save or clear. */
export function openTokenDialog(onChange: () => void): void {
  const dialog = modal("token-dialog", "Admin token");
  const input = h("input", {
    type: "password",
    id: "token-input",
    "data-testid": "token-input",
    autocomplete: "off",
    placeholder: "MLSHIP_ADMIN_TOKEN",
    value: getToken() ?? "",
  });
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", null, "Admin token"),
    h(
      "p",
      { class: "muted" },
      "Reads are open; actions (promote, abort, rollback, start a rollout) need the server's admin token. It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.",
    ),
    h("label", { for: "token-input" }, "Token"),
    input,
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "submit", class: "primary", "data-testid": "token-save" }, "Save"),
      h("button", { type: "button", "data-testid": "token-clear", onclick: () => { setToken(null); dialog.close(); onChange(); } }, "Forget"),
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    dialog.close();
    onChange();
  });
  dialog.append(form);
  dialog.showModal();
  input.focus();
}

/** Asks before an action; resolves with the reason typed (maybe empty), or null when cancelled. */
export function confirmAction(title: string, what: Child): Promise<string | null> {
  return new Promise((resolve) => {
    const dialog = modal("confirm-dialog", title);
    const reason = h("input", { type: "text", id: "confirm-reason", "data-testid": "confirm-reason", placeholder: "why (kept in the audit log)", maxlength: 500 });
    let answer: string | null = null;
    const ok = h("button", { type: "button", class: "primary", "data-testid": "confirm-ok" }, "Confirm");
    const cancel = h("button", { type: "button", "data-testid": "confirm-cancel" }, "Cancel");
    ok.addEventListener("click", () => {
      answer = reason.value.trim();
      dialog.close();
    });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => resolve(answer));
    dialog.append(
      h("h2", null, title),
      h("div", { class: "confirm-what", "data-testid": "confirm-what" }, what),
      h("label", { for: "confirm-reason" }, "Reason (optional)"),
      reason,
      h("div", { class: "buttons" }, ok, cancel),
    );
    dialog.showModal();
    cancel.focus();
  });
}

export interface ActionSpec {
  /** `action-promote`, `action-abort`, ... */
  testid: string;
  label: string;
  /** Confirmation title and what will happen, naming the model, versions and alias. */
  title: string;
  what: Child;
  method: "POST" | "PUT" | "DELETE";
  path: string;
  body: Record<string, unknown>;
  /** The success line shown in `action-result`. */
  done: (answer: unknown) => string;
  danger?: boolean;
  /** Reads a form at click time: what to confirm and the body to send, or why the form cannot be sent. */
  prepare?: () => { what: Child; body: Record<string, unknown> } | { invalid: string };
}

/** Shows an action's outcome in the page's flash area. */
export function showOutcome(flash: HTMLElement, ok: boolean, text: string): void {
  replace(
    flash,
    h(
      "div",
      { class: ok ? "result ok" : "result bad", role: ok ? "status" : "alert", "data-testid": ok ? "action-result" : "action-error" },
      h("span", { "aria-hidden": "true" }, ok ? "✓ " : "✗ "),
      text,
      h("button", { type: "button", class: "link", "aria-label": "dismiss", onclick: () => replace(flash) }, "×"),
    ),
  );
}

/**
 * An action button: disabled with the reason as its title when the server has no admin token; otherwise confirm,
 * send (with the token), show the answer, and call `after` on success.
 */
export function actionButton(spec: ActionSpec, flash: HTMLElement, after: () => void): HTMLButtonElement {
  const disabled = actionsDisabledReason();
  const button = h("button", {
    type: "button",
    class: spec.danger ? "action danger" : "action",
    "data-testid": spec.testid,
    disabled: disabled !== null,
    title: disabled ?? (getToken() === null ? "Needs the admin token (button at the top right)" : spec.title),
  }, spec.label);
  button.addEventListener("click", () => {
    void (async () => {
      let what = spec.what;
      let body = spec.body;
      if (spec.prepare) {
        const prepared = spec.prepare();
        if ("invalid" in prepared) {
          showOutcome(flash, false, prepared.invalid);
          return;
        }
        ({ what, body } = prepared);
      }
      const reason = await confirmAction(spec.title, what);
      if (reason === null) return;
      button.disabled = true;
      try {
        if (reason !== "") body = { ...body, reason };
        const answer = await sendJson<unknown>(spec.method, spec.path, body);
        showOutcome(flash, true, spec.done(answer));
        after();
      } catch (error) {
        const hint = error instanceof ApiError && (error.status === 401 || error.status === 403) && getToken() === null ? " Set the admin token first (top right)." : "";
        showOutcome(flash, false, `${spec.label} refused: ${describeError(error)}${hint}`);
      } finally {
        button.disabled = false;
      }
    })();
  });
  return button;
}
