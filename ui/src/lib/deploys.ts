// Pure helpers of the Deploys page and the Releases tab: a deployment's release range and duration,
// a release change's values, a unified diff split into lines, and live deploy events merged into a list.
import type { Schemas } from "../api/client";

export type Deployment = Schemas["Deployment"];
export type ReleaseChange = Schemas["ReleaseChange"];
export type DeployStatus = Deployment["status"];

export const FINAL: readonly DeployStatus[] = ["succeeded", "failed", "rolled_back"];

/** The badge tone of a deployment status: a running one is not yet a success (services' "running" is). */
export function deployTone(status: DeployStatus): string {
  return status === "running" ? "deploying" : status;
}

/** "2 → 3", or "– → 1" for a first release. */
export function releaseRange(d: Pick<Deployment, "from_release" | "release">): string {
  return `${d.from_release ?? "–"} → ${d.release}`;
}

/** "850 ms", "12.3 s", "4 min 05 s", "1 h 02 min"; "–" when unknown. */
export function durationText(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** How long a deployment took, or has been running until `now` (seconds since the epoch). */
export function deploymentDuration(d: Pick<Deployment, "created_at" | "finished_at" | "status">, now: number): number | null {
  if (d.finished_at != null) return d.finished_at - d.created_at;
  return FINAL.includes(d.status) ? null : Math.max(0, now - d.created_at);
}

/** A change's value as shown in a table cell: strings as they are, absent as "(none)", others as JSON. */
export function changeValue(v: unknown): string {
  if (v === undefined || v === null) return "(none)";
  if (typeof v === "string") return v === "" ? '""' : v;
  return JSON.stringify(v);
}

export type UnifiedLine = { kind: "add" | "del" | "same" | "hunk"; text: string };

/** A unified diff (as orch makes for multi-line text) as lines to colour; the ---/+++ header dropped. */
export function unifiedLines(diff: string): UnifiedLine[] {
  const out: UnifiedLine[] = [];
  for (const raw of diff.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line.startsWith("--- ") || line.startsWith("+++ ")) continue;
    if (line.startsWith("@@")) out.push({ kind: "hunk", text: line });
    else if (line.startsWith("+")) out.push({ kind: "add", text: line.slice(1) });
    else if (line.startsWith("-")) out.push({ kind: "del", text: line.slice(1) });
    else if (line.startsWith(" ")) out.push({ kind: "same", text: line.slice(1) });
    else if (line.startsWith("\\")) out.push({ kind: "hunk", text: line }); // "\ No newline at end of file"
  }
  return out;
}

/** The payload of `deploy.progress` / `deploy.finished` (orch/deployer.py `_event`, plus the step). */
export interface DeployEvent {
  deployment_id: number;
  service: string;
  release: number;
  status: DeployStatus;
  error?: string | null;
  step?: string;
  outcome?: string;
  detail?: string;
}

const STATUSES: readonly string[] = ["pending", "running", "succeeded", "failed", "rolled_back"];

/** The event's data when it has the fields a deploy event must have, else null (never trust a stream). */
export function asDeployEvent(data: Record<string, unknown>): DeployEvent | null {
  const { deployment_id, service, release, status } = data;
  if (typeof deployment_id !== "number" || typeof service !== "string" || typeof release !== "number") return null;
  if (typeof status !== "string" || !STATUSES.includes(status)) return null;
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return {
    deployment_id, service, release, status: status as DeployStatus,
    error: str(data.error) ?? null, step: str(data.step), outcome: str(data.outcome), detail: str(data.detail),
  };
}

/** The list with the event's deployment updated (status, error, a new log step), or null when the
 * event is about a deployment the list does not have yet (the caller reloads). */
export function mergeDeployEvent(list: Deployment[], ev: DeployEvent, at: number): Deployment[] | null {
  const k = list.findIndex((d) => d.id === ev.deployment_id);
  if (k < 0) return null;
  const d = list[k];
  const log = ev.step ? [...d.log, { at, step: ev.step, outcome: ev.outcome ?? "", detail: ev.detail ?? "" }] : d.log;
  const finished = FINAL.includes(ev.status) ? d.finished_at ?? at : d.finished_at;
  const next: Deployment = { ...d, status: ev.status, error: ev.error ?? d.error, log, finished_at: finished };
  return [...list.slice(0, k), next, ...list.slice(k + 1)];
}
