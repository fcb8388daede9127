// Proves that the types in schema.ts still reject what they should; if a new @grafana/schema
// turned a field into `unknown`, or AsJson stopped mapping enums, a line below would stop
// erroring and `@ts-expect-error` would fail the check.
import type { Dashboard10, Dashboard11 } from "./schema.ts";

export const minimal: [Dashboard11, Dashboard10] = [
  {
    schemaVersion: 39,
    panels: [
      {
        type: "timeseries",
        gridPos: { x: 0, y: 0, w: 8, h: 8 },
        fieldConfig: {
          defaults: { color: { mode: "palette-classic" }, thresholds: { mode: "absolute", steps: [] } },
          overrides: [],
        },
      },
    ],
    templating: { list: [{ type: "datasource", name: "datasource", query: "prometheus", hide: 0 }] },
  },
  { schemaVersion: 39 },
];

// @ts-expect-error schemaVersion is required
export const noSchemaVersion: Dashboard11 = { title: "x" };
// @ts-expect-error unknown key on the dashboard
export const unknownKey: Dashboard11 = { schemaVersion: 39, titel: "x" };
// @ts-expect-error gridPos misspelt
export const misspeltGridPos: Dashboard11 = { schemaVersion: 39, panels: [{ type: "stat", gridpos: { x: 0, y: 0, w: 1, h: 1 } }] };
// @ts-expect-error gridPos.h missing
export const shortGridPos: Dashboard10 = { schemaVersion: 39, panels: [{ type: "stat", gridPos: { x: 0, y: 0, w: 1 } }] };
export const badColorMode: Dashboard11 = {
  schemaVersion: 39,
  panels: [
    // @ts-expect-error not a FieldColorModeId value
    { type: "stat", fieldConfig: { defaults: { color: { mode: "palette-classical" } }, overrides: [] } },
  ],
};
// @ts-expect-error not a VariableType
export const badVariableType: Dashboard11 = { schemaVersion: 39, templating: { list: [{ type: "querry", name: "job" }] } };
// @ts-expect-error not a VariableHide value
export const badHide: Dashboard10 = { schemaVersion: 39, templating: { list: [{ type: "query", name: "job", hide: 7 }] } };
