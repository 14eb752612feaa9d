import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX, { createNodeResolver } from "eslint-plugin-import-x";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", ".mlship/**", ".tmp/**", "coverage/**", "bin/**", "eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "import-x": importX },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // Each src/ folder is reached only through its index.ts.
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^\\.\\./(core|config|package|store|registry|runtime|scoring|serve|cli)/(?!index\\.js$).+",
              message: "Import another folder through its index.js only.",
            },
          ],
        },
      ],
    },
  },
  {
    // Cycles matter where modules import each other: src/. Tests, benchmarks and examples are leaves nothing imports,
    // and walking the graph again from each of them was most of the lint's time.
    // The resolver maps the ".js" of an ESM import to the ".ts" beside it; without it no import resolved and the rule
    // saw no edges at all. Packages are leaves for this rule (ignoreExternal), so it does not walk node_modules.
    files: ["src/**/*.ts"],
    settings: {
      "import-x/extensions": [".ts", ".js"],
      "import-x/parsers": { "@typescript-eslint/parser": [".ts"] },
      "import-x/resolver-next": [createNodeResolver({ extensions: [".ts", ".js", ".json", ".node"], extensionAlias: { ".js": [".ts", ".js"] } })],
    },
    rules: { "import-x/no-cycle": ["error", { ignoreExternal: true }] },
  },
  {
    files: ["test/**/*.ts", "bench/**/*.ts", "examples/**/*.ts"],
    rules: { "no-restricted-imports": "off" },
  },
  {
    // The dashboard's browser code (its own tsconfig, DOM types): browser globals, no Node.
    files: ["src/ui/client/**/*.ts"],
    languageOptions: {
      globals: Object.fromEntries(
        ["window", "document", "location", "history", "navigator", "sessionStorage", "localStorage", "fetch", "URL", "URLSearchParams",
          "AbortController", "AbortSignal", "DOMException", "ResizeObserver", "requestAnimationFrame", "setTimeout", "clearTimeout", "console",
          "HTMLElement", "HTMLDialogElement", "Event", "Node", "Response"].map((name) => [name, "readonly"]),
      ),
    },
    rules: { "no-restricted-globals": ["error", "process", "Buffer", "require", "__dirname"] },
  },
  {
    // Build scripts run by Node directly.
    files: ["scripts/**/*.mjs"],
    languageOptions: {
      globals: Object.fromEntries(["process", "console", "URL", "Buffer", "setTimeout", "clearTimeout"].map((name) => [name, "readonly"])),
    },
  },
);
