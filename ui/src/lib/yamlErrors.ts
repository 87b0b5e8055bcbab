// The service spec editor's problems, each at its line: YAML syntax errors and simple structural
// checks found in the browser as the person types, and the server's validation problems (orch
// names file, line and field) after an apply — mapped to a line even when only the field is known.
import { LineCounter, parseDocument, isMap, isSeq, isScalar, type Node } from "yaml";

export interface Problem {
  line: number | null; // 1-based
  field: string;
  message: string;
  source: "yaml" | "check" | "server";
}

// The spec's top-level keys (orch/spec.py); an unknown one is almost always a typo.
export const SPEC_KEYS = [
  "name", "runtime", "cmd", "image", "workdir", "env", "ports", "healthcheck", "restart_policy", "depends_on",
  "resources", "replicas", "user", "stop_timeout", "stop_signal", "volumes", "config_files",
];

/** Problems found without the server: YAML syntax, a mapping at the top, `name`, `cmd` or `image`, known keys. */
export function localProblems(text: string): Problem[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const out: Problem[] = [];
  for (const e of doc.errors) {
    const pos = e.linePos?.[0] ?? (e.pos ? lc.linePos(e.pos[0]) : undefined);
    out.push({ line: pos?.line ?? null, field: "", message: firstLine(e.message), source: "yaml" });
  }
  if (out.length) return out;
  const root = doc.contents;
  if (!text.trim()) return [{ line: 1, field: "", message: "the spec is empty", source: "check" }];
  if (!isMap(root)) {
    return [{ line: lineOf(root, lc) ?? 1, field: "", message: "the spec must be a mapping of keys (name: ..., cmd: ...)", source: "check" }];
  }
  const keys = new Map<string, Node | null>();
  for (const pair of root.items) {
    const k = isScalar(pair.key) ? String(pair.key.value) : "";
    keys.set(k, pair.key as Node);
    if (!SPEC_KEYS.includes(k)) {
      const near = SPEC_KEYS.find((s) => editDistance(s, k) <= 2);
      out.push({ line: lineOf(pair.key as Node, lc), field: k, source: "check",
        message: `unknown key ${JSON.stringify(k)}${near ? `; did you mean ${JSON.stringify(near)}?` : ""}` });
    }
  }
  if (!keys.has("name")) out.push({ line: 1, field: "name", message: "name is required", source: "check" });
  if (!keys.has("cmd") && !keys.has("image")) {
    out.push({ line: 1, field: "cmd", message: "give cmd (a process) or image (a container)", source: "check" });
  }
  return out.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

/** The line of a dotted field path ("healthcheck.interval", "ports.0.internal") in the YAML text. */
export function lineOfField(text: string, field: string): number | null {
  if (!field) return null;
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  let node: unknown = doc.contents;
  let line: number | null = null;
  for (const part of field.split(".")) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === part);
      if (!pair) break;
      line = lineOf(pair.key as Node, lc) ?? line;
      node = pair.value;
    } else if (isSeq(node) && /^\d+$/.test(part)) {
      const item = node.items[Number(part)] as Node | undefined;
      if (!item) break;
      line = lineOf(item, lc) ?? line;
      node = item;
    } else break;
  }
  return line;
}

/** The server's problems (ApiError.details.problems of an invalid_spec), each placed on a line. */
export function serverProblems(text: string, details: Record<string, unknown>): Problem[] {
  const raw = details.problems;
  if (Array.isArray(raw)) {
    return raw.map((p: { line?: number | null; field?: string; message?: string }) => ({
      line: p.line ?? lineOfField(text, p.field ?? ""),
      field: p.field ?? "",
      message: p.message ?? "invalid",
      source: "server" as const,
    }));
  }
  const errors = details.errors; // a plain validation_failed: [{field, message}]
  if (Array.isArray(errors)) {
    return errors.map((e: { field?: string; message?: string }) => ({
      line: lineOfField(text, e.field ?? ""), field: e.field ?? "", message: e.message ?? "invalid", source: "server" as const,
    }));
  }
  return [];
}

/** Problems by line, for the editor's gutter. */
export function byLine(problems: Problem[]): Map<number, Problem[]> {
  const m = new Map<number, Problem[]>();
  for (const p of problems) {
    const line = p.line ?? 1;
    m.set(line, [...(m.get(line) ?? []), p]);
  }
  return m;
}

function lineOf(node: Node | null | undefined, lc: LineCounter): number | null {
  const start = node?.range?.[0];
  return start == null ? null : lc.linePos(start).line;
}

function firstLine(s: string): string {
  return s.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
}

export function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return dp[a.length][b.length];
}
