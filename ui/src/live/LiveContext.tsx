// The live-event store as React context: one EventSource for the whole console.
import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { EventStore, type LiveEvent, type LiveState } from "./eventStore";

const Ctx = createContext<EventStore | null>(null);

export function LiveProvider({ children }: { children: ReactNode }) {
  const [store] = useState(() => new EventStore({ open: (url) => new EventSource(url, { withCredentials: true }) as never }));
  useEffect(() => {
    store.start();
    return () => store.stop();
  }, [store]);
  return <Ctx.Provider value={store}>{children}</Ctx.Provider>;
}

export function useLiveStore(): EventStore {
  const s = useContext(Ctx);
  if (!s) throw new Error("useLiveStore outside LiveProvider");
  return s;
}

export function useLiveState(): LiveState {
  const store = useLiveStore();
  const [state, setState] = useState(store.state);
  useEffect(() => store.onState(setState), [store]);
  return state;
}

/** Call `fn` for every event matching `pattern` ("route.changed", "service.*", "*"). */
export function useEvent(pattern: string, fn: (ev: LiveEvent) => void): void {
  const store = useLiveStore();
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => store.on(pattern, (ev) => saved.current(ev)), [store, pattern]);
}

export function LiveIndicator() {
  const state = useLiveState();
  const text = { open: "live", connecting: "connecting…", reconnecting: "reconnecting…", closed: "offline" }[state];
  return (
    <span className={`live ${state}`} data-live={state} title="the console's live event stream">
      <span className="dot" />
      {text}
    </span>
  );
}
