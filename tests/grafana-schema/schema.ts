// The dashboard types of two Grafana releases, in the shape a dashboard JSON file can have.
//
// @grafana/schema declares some fields as TypeScript string enums (FieldColorModeId,
// ThresholdsMode, MappingType, SpecialValueMatch). Only the enum's own members are assignable to
// those, never the string "thresholds" a JSON file holds, and a JSON module import widens every
// string to `string` anyway. So `const d: Dashboard = importedJson` can never pass. `AsJson`
// rewrites each string enum to the union of its values (`${E}`), keeping everything else, and
// tests/it/dashboard.rs checks the dashboard as an object literal of this type: that also gets
// TypeScript's excess-property check, so a misspelt key (`gridpos`) fails too.
//
// What the types do not cover: panel `options`, `targets` and `fieldConfig.defaults.custom` are
// `Record<string, unknown>` there (each panel plugin owns its own), so only their being objects
// is checked.
import type { Dashboard as Dashboard11Types } from "@grafana/schema";
import type { Dashboard as Dashboard10Types } from "grafana-schema-10";

export type AsJson<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<AsJson<U>>
      : T extends object
        ? { [K in keyof T]: AsJson<T[K]> }
        : T;

/** Grafana 11 (@grafana/schema 11.6). */
export type Dashboard11 = AsJson<Dashboard11Types>;
/** Grafana 10 (@grafana/schema 10.4). */
export type Dashboard10 = AsJson<Dashboard10Types>;
