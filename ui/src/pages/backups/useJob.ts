// Follow a snap job to its end: GET /api/snap/jobs/{id} while it runs (progress is only in the job),
// and at once when a snap.done / snap.failed event names the job's plan (no waiting for the next poll).
import { useCallback, useEffect, useRef, useState } from "react";
import { api, unwrap, type Schemas } from "../../api/client";
import { useEvent } from "../../live/LiveContext";

export type Job = Schemas["BackupJob"] | Schemas["RestoreJob"] | Schemas["ScrubJob"] | Schemas["ForgetJob"] | Schemas["PruneJob"];

const POLL_MS = 700;

export function useJob(initial: Job | null, plan: string | null, onDone?: (job: Job) => void) {
  const [job, setJob] = useState<Job | null>(initial);
  const [error, setError] = useState<unknown>(null);
  const id = initial?.id ?? null;
  const doneRef = useRef(onDone);
  doneRef.current = onDone;
  const finished = useRef(false);

  const refresh = useCallback(async () => {
    if (!id || finished.current) return;
    try {
      const j = (await unwrap(api.GET("/api/snap/jobs/{id}", { params: { path: { id } } }))) as Job;
      setJob(j);
      setError(null);
      if (j.state !== "running" && !finished.current) {
        finished.current = true;
        doneRef.current?.(j);
      }
    } catch (e) {
      setError(e);
    }
  }, [id]);

  useEffect(() => {
    finished.current = initial != null && initial.state !== "running";
    setJob(initial);
    if (!id) return;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let stop = false;
    const tick = async () => {
      await refresh();
      if (!stop && !finished.current) timer = setTimeout(tick, POLL_MS);
    };
    timer = setTimeout(tick, POLL_MS);
    return () => {
      stop = true;
      if (timer) clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [id]);

  useEvent("snap.*", (ev) => {
    if ((ev.type === "snap.done" || ev.type === "snap.failed") && plan && ev.data.plan === plan) void refresh();
  });

  return { job, error };
}

/** The backup progress of a job, when it has reported some. */
export function backupProgress(job: Job | null): Schemas["BackupProgress"] | null {
  if (!job || job.kind !== "backup") return null;
  const p = job.progress as Partial<Schemas["BackupProgress"]>;
  return p.current !== undefined ? (p as Schemas["BackupProgress"]) : null;
}

export function restoreProgress(job: Job | null): Schemas["RestoreProgress"] | null {
  if (!job || job.kind !== "restore") return null;
  const p = job.progress as Partial<Schemas["RestoreProgress"]>;
  return p.target !== undefined ? (p as Schemas["RestoreProgress"]) : null;
}

/** Logical bytes per stored byte: how much deduplication and compression saved. */
export function dedupRatio(bytes: number, stored: number): string {
  if (bytes === 0) return "–";
  if (stored === 0) return "all reused";
  return `${(bytes / stored).toFixed(bytes / stored >= 10 ? 0 : 1)}×`;
}
