/**
 * A small element builder. Children that are strings become text nodes, so server data (model names, error
 * messages) never goes through HTML parsing.
 */

export type Child = Node | string | number | null | undefined | false | Child[];

type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>;

function append(parent: Node, child: Child): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
    return;
  }
  parent.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
}

/** `h("a", { href: "#/models", class: "x" }, "text", otherNode)`. `on<event>` attributes add listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (typeof value === "function") element.addEventListener(key.slice(2).toLowerCase(), value);
      else if (value === true) element.setAttribute(key, "");
      else element.setAttribute(key, String(value));
    }
  }
  append(element, children);
  return element;
}

export function clear(element: Element): void {
  element.replaceChildren();
}

export function replace(element: Element, ...children: Child[]): void {
  element.replaceChildren();
  append(element, children);
}

/** A name usable in a `data-testid`: characters outside `[A-Za-z0-9_-]` become `_`. */
export function testName(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, "_");
}

/** `#/models/{name}` with the name encoded. */
export function hashLink(...parts: (string | number)[]): string {
  return `#/${parts.map((p) => encodeURIComponent(String(p))).join("/")}`;
}
