// Pure helpers of the host-scan card: severity order and grouping, and findings from live events.
import type { Schemas } from "../../api/client";

export type Finding = Schemas["FindingOut"];
export type Severity = Finding["severity"];

export const SEVERITIES: Severity[] = ["critical", "high", "medium", "low", "info"];

/** Findings grouped by severity, most severe first; within a group new ones first, then by title. Pure. */
export function groupBySeverity(findings: Finding[]): [Severity, Finding[]][] {
  return SEVERITIES.map((s): [Severity, Finding[]] => [
    s,
    findings.filter((f) => f.severity === s).sort((a, b) => Number(!!b.new) - Number(!!a.new) || a.title.localeCompare(b.title)),
  ]).filter(([, fs]) => fs.length > 0);
}

/** A `security.finding` event's data as a finding (the event carries no evidence). Null if malformed. */
export function findingFromEvent(data: Record<string, unknown>): Finding | null {
  const { id, category, severity, title, fix } = data;
  if (typeof id !== "string" || typeof title !== "string" || typeof fix !== "string") return null;
  if (!SEVERITIES.includes(severity as Severity)) return null;
  return { id, category: typeof category === "string" ? category : "", severity: severity as Severity, title, fix,
    evidence: [], details: {}, new: true };
}


/** A fix's text split on its `code` spans (odd indexes are code), as the scanner writes them. Pure. */
export function fixParts(fix: string): string[] {
  const parts = fix.split("`");
  return parts.length % 2 === 1 ? parts : [fix]; // an unpaired backtick: show the text as it is
}

/** What "Copy" puts on the clipboard: the command when the fix is one command, else the whole text. Pure. */
export function fixToCopy(fix: string): string {
  const parts = fixParts(fix);
  const code = parts.filter((_, i) => i % 2 === 1);
  return code.length === 1 ? code[0] : parts.join("");
}
