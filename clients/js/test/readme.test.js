// The README's examples import only what the package exports (values from the module,
// types from index.d.ts), so a renamed export cannot leave them stale.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as sdk from "../src/cidadao-realtime.js";

const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
const declarations = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");

test("every name the README imports from the SDK exists", () => {
  const section = readme.slice(readme.indexOf("## JavaScript / TypeScript client"));
  const imports = [...section.matchAll(/import \{([^}]+)\} from "(?:cidadao-realtime|\/sdk\/cidadao-realtime\.js)"/g)];
  assert.ok(imports.length >= 4, "the README shows the SDK imported");
  for (const [, names] of imports) {
    for (const raw of names.split(",")) {
      const name = raw.trim();
      if (name.startsWith("type ")) {
        const type = name.slice(5);
        assert.match(declarations, new RegExp(`export (?:declare )?(?:interface|type|class) ${type}\\b`), type);
      } else {
        assert.equal(typeof sdk[name], "function", name);
      }
    }
  }
});
