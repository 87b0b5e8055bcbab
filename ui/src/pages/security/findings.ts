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

