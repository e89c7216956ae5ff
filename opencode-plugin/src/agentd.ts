// agentd-opencode-plugin: forwards OpenCode's plugin callbacks to the agentd daemon (docs/opencode.md)
//
// Installed by `agentd install opencode`; `agentd uninstall opencode` removes this file only while
// its first line is the one above. Thin on purpose: it forwards each callback's arguments as they
// came, as an `ingest` with source "opencode" (docs/protocol.md); every interpretation lives in
// the daemon (daemon/agentd/normalizers/opencode.py).
//
// Payloads: `{"kind": "event", "event": {...}}` for bus events, `{"kind": "<callback>", "input":
// {...}, "output": {...}}` for the other callbacks; `received_at` is Date.now() at callback time.
//
// Rules, because it runs inside OpenCode, on its hot path:
// - never throw into OpenCode (a throwing tool.execute.before would block the tool), never reject;
// - never wait for the daemon in a callback: serialize, enqueue, return. One persistent Unix socket
//   connection sends pipelined requests with ids; acks are matched by id;
// - lose nothing: what the daemon has not acked is retried, or appended to the spool when the
//   daemon is unreachable, the queue would overflow, or OpenCode exits (a synchronous write in
//   process.on("exit")). The daemon drains the spool; replays are stored once;
// - send nothing to a socket another user could have planted, spool into no directory of theirs
//   (the hook's checks, docs/protocol.md "Guarantees"; see `refusal` below);
// - no dependency: node: builtins only, and types from @opencode-ai/plugin (erased at load).
//
// One file, longer than the project's ~400 lines per module: `agentd install opencode` copies
// this file alone into OpenCode's plugins/ directory, where every file is loaded as a plugin.
//
// Export only the plugin: OpenCode calls every exported function as a plugin and rejects a module
// with any other export ("Plugin export is not a function").

import type { Hooks, Plugin, PluginInput } from "@opencode-ai/plugin";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const SOURCE = "opencode";
const PLUGIN_VERSION = 1;
// These two are MAX_LINE_BYTES and ENVELOPE_BYTES of daemon/agentd/paths.py (tests/test_hook.py
// keeps them equal).
const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024; // the daemon's default max_line_bytes
const ENVELOPE_BYTES = 256; // room for the JSON-RPC envelope around the params
const MAX_QUEUE_ITEMS = 10_000; // unacked events held in memory (queued + in flight) ...
const MAX_QUEUE_BYTES = 64 * 1024 * 1024; // ... and their size (UTF-16 units); beyond: spooled
const MAX_IN_FLIGHT = 256; // sent, not yet acked (the daemon reads 256 lines ahead per connection)
const WRITE_CHUNK = 1024 * 1024; // one socket write carries at most about this much
const CONFIG_MAX_BYTES = 1024 * 1024; // of config.toml, only this much is read
const CONNECT_TIMEOUT_MS = 2_000; // a socket that neither accepts nor refuses
const ACK_TIMEOUT_MS = 10_000; // an ack this late: the connection is dropped and the events resent
const MAX_ATTEMPTS = 3; // sends of one event before it goes to the spool instead
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 5_000;
const SPOOL_FILE_MAX_BYTES = 64 * 1024 * 1024; // then the spool file is finished, a new one begun
const DISPOSE_FLUSH_MS = 1_000; // dispose waits this long at most for acks, then spools the rest
const BEFORE_EXIT_FLUSH_MS = 500;
const SHRINK_MAX_VALUES = 100_000; // values read, at most, to cut an oversize event down (cutToFit)
const SHORT_STRING_CHARS = 256; // strings this short (ids, kinds, names) are never cut
// Bus events not forwarded: streaming text chunks, whose full text the part's final
// message.part.updated snapshot carries. AGENTD_OPENCODE_SKIP_EVENTS (comma-separated, "" for
// none) overrides the list.
const DEFAULT_SKIP_EVENTS = "message.part.delta";

const SHARED = Symbol.for(`agentd.opencode-plugin.v${PLUGIN_VERSION}`);
const CLAIMS = Symbol.for("agentd.opencode-plugin.claims");
const DONE: Promise<void> = Promise.resolve();
const THIS_COPY = {}; // this copy of the file (a user-scope and a project-scope copy may both load)

type Env = Record<string, string | undefined>;
type Item = { params: string; size: number; attempts: number; id: number; sentAt: number };
type Stats = {
  enqueued: number;
  acked: number;
  spooled: number;
  dropped: number;
  resent: number;
  connects: number;
  spoolFiles: number;
  errors: number;
  lastError: string;
};

// --- where things are: exactly daemon/agentd/paths.py --------------------------------------------

function expandUser(p: string, home: string): string {
  return p === "~" || p.startsWith("~/") ? home + p.slice(1) : p;
}

type Settings = {
  socketPath: string;
  spoolDir: string;
  maxLineBytes: number;
  skipEvents: Set<string>;
};

function resolveSettings(env: Env): Settings {
  const home = env.HOME || os.homedir();
  const xdg = (name: string, fallback: string) =>
    env[name] ? expandUser(env[name] as string, home) : path.join(home, fallback);
  const agentdHome = env.AGENTD_HOME ? expandUser(env.AGENTD_HOME, home) : "";
  const configFile = env.AGENTD_CONFIG
    ? expandUser(env.AGENTD_CONFIG, home)
    : agentdHome
      ? path.join(agentdHome, "config.toml")
      : path.join(xdg("XDG_CONFIG_HOME", ".config"), "agentd", "config.toml");
  const stateDir = agentdHome || path.join(xdg("XDG_STATE_HOME", ".local/state"), "agentd");
  const file = readConfigFile(configFile);
  let socketPath: string;
  if (env.AGENTD_SOCKET) socketPath = expandUser(env.AGENTD_SOCKET, home);
  else if (typeof file.socket === "string") socketPath = expandUser(file.socket, home);
  else if (agentdHome) socketPath = path.join(agentdHome, "agentd.sock");
  else if (env.XDG_RUNTIME_DIR) socketPath = path.join(env.XDG_RUNTIME_DIR, "agentd", "agentd.sock");
  else socketPath = path.join(stateDir, "agentd.sock");
  const maxLine = typeof file.max_line_bytes === "number" ? file.max_line_bytes : 0;
  const skip = env.AGENTD_OPENCODE_SKIP_EVENTS ?? DEFAULT_SKIP_EVENTS;
  return {
    socketPath,
    spoolDir: path.join(stateDir, "spool"),
    maxLineBytes: maxLine > ENVELOPE_BYTES * 4 ? maxLine : DEFAULT_MAX_LINE_BYTES,
    skipEvents: new Set(skip.split(",").map((s) => s.trim()).filter(Boolean)),
  };
}

/** The two top-level keys of config.toml the plugin needs (`socket`, `max_line_bytes`), read with
 * a small parser for `key = "basic" | 'literal' | 123` lines before the first [table]. Anything
 * else in the file is the daemon's business; an unreadable file counts as absent, and so does
 * anything but a regular file: it is read while OpenCode starts, which a FIFO (opened without
 * O_NONBLOCK) or a device would block forever. */
function readConfigFile(file: string): { socket?: string; max_line_bytes?: number } {
  const found: { socket?: string; max_line_bytes?: number } = {};
  let text: string;
  let fd: number | null = null;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return found;
    const data = Buffer.alloc(Math.min(st.size, CONFIG_MAX_BYTES));
    let size = 0;
    while (size < data.length) {
      const n = fs.readSync(fd, data, size, data.length - size, size);
      if (n <= 0) break;
      size += n;
    }
    text = data.toString("utf8", 0, size);
    if (st.size > size) text = text.slice(0, text.lastIndexOf("\n") + 1); // no cut last line
  } catch {
    return found;
  } finally {
    if (fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {
        /* nothing to do */
      }
    }
  }
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("[")) break;
    const basic = /^socket\s*=\s*"((?:[^"\\]|\\.)*)"\s*(#.*)?$/.exec(line);
    if (basic) {
      try {
        found.socket = JSON.parse(`"${basic[1]}"`) as string;
      } catch {
        /* not a string JSON can read either: ignore it */
      }
      continue;
    }
    const literal = /^socket\s*=\s*'([^']*)'\s*(#.*)?$/.exec(line);
    if (literal) {
      found.socket = literal[1];
      continue;
    }
    const number = /^max_line_bytes\s*=\s*([0-9_]+)\s*(#.*)?$/.exec(line);
    if (number) found.max_line_bytes = Number(number[1].replaceAll("_", ""));
  }
  return found;
}

// --- serialization ----------------------------------------------------------------------------

/** JSON of anything, whatever it holds: circular references, BigInts, throwing getters or toJSON,
 * revoked proxies. The fast path is plain JSON.stringify; this is the fallback. */
function safeStringify(value: unknown): string {
  const ancestors: object[] = [];
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === "string") return wellFormed(v);
    if (typeof v === "bigint") return v.toString();
    if (v === null || typeof v !== "object") return v; // numbers, booleans; functions are dropped
    if (ancestors.includes(v)) return "[circular]";
    if (depth > 200) return "[too deep]";
    ancestors.push(v);
    try {
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === "function") return walk(toJSON.call(v), depth + 1);
      if (Array.isArray(v)) {
        const out: unknown[] = [];
        for (let i = 0; i < v.length; i++) {
          try {
            out.push(walk(v[i], depth + 1) ?? null);
          } catch (e) {
            out.push(`[unreadable: ${describe(e)}]`);
          }
        }
        return out;
      }
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(v)) {
        try {
          const item = walk((v as Record<string, unknown>)[key], depth + 1);
          if (item !== undefined && typeof item !== "function" && typeof item !== "symbol") {
            out[wellFormed(key)] = item;
          }
        } catch (e) {
          out[wellFormed(key)] = `[unreadable: ${describe(e)}]`;
        }
      }
      return out;
    } catch (e) {
      return `[unreadable: ${describe(e)}]`;
    } finally {
      ancestors.pop();
    }
  };
  return JSON.stringify(walk(value, 0)) ?? "null";
}

function describe(e: unknown): string {
  try {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  } catch {
    return "unknown error";
  }
}

function wellFormed(s: string): string {
  const str = s as string & { toWellFormed?: () => string };
  return typeof str.toWellFormed === "function" ? str.toWellFormed() : s;
}

/** JSON.stringify escapes a lone UTF-16 surrogate as `\udXXX` (it never escapes a valid pair), which
 * strict JSON decoders reject: make each one U+FFFD. An odd run of backslashes before the `u` is an
 * escape; an even one is escaped backslashes followed by the letter u. */
const LONE_SURROGATE_ESCAPE = /(\\+)u(d[89a-f][0-9a-f]{2})/g;

function repairSurrogates(json: string): string {
  if (!json.includes("\\ud")) return json;
  return json.replace(LONE_SURROGATE_ESCAPE, (match: string, slashes: string) =>
    slashes.length % 2 === 1 ? `${slashes}ufffd` : match,
  );
}

/** The JSON of one payload. Never throws. */
function serialize(payload: Record<string, unknown>): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch {
    try {
      json = safeStringify(payload);
    } catch (e) {
      json = JSON.stringify({ kind: payload.kind, agentd_unserializable: describe(e) });
    }
  }
  return repairSurrogates(json ?? "{}");
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** A payload whose JSON would make a line over the daemon's limit (which would close the
 * connection), cut down to fit: see cutToFit. A pass that still comes out too long (multi-byte
 * text) is redone once with the budget scaled by what it measured; a stub naming the event is the
 * last resort. */
function shrink(payload: Record<string, unknown>, original: number, limit: number): string {
  let budget = limit;
  for (let pass = 0; pass < 3; pass++) {
    const json = repairSurrogates(cutToFit(payload, budget));
    const bytes = utf8Length(json);
    if (bytes <= limit) return json;
    budget = Math.floor((budget * limit * 0.9) / bytes);
  }
  return serialize({ kind: payload.kind, agentd_oversize: { bytes: original } });
}

/** The JSON of `root` in about `budget` characters, in one pass that reads at most
 * SHRINK_MAX_VALUES values, whatever it holds (an oversize event may be made of millions of
 * small values, or of a tree of shared references far larger than its memory): at each level
 * of an object its short values (ids, kind, type, names) come first, whole, then its long
 * strings and nested values in order; a long string keeps at most 1/16 of the budget; once the
 * budget or the value count runs out, the rest of each array and object is replaced by a count.
 * Handles what safeStringify handles (cycles, BigInts, throwing getters and toJSON, revoked
 * proxies). */
function cutToFit(root: unknown, budget: number): string {
  const out: string[] = [];
  let size = 0;
  let values = 0;
  const reserve = Math.min(16_384, budget / 4); // the closing brackets and counts still to come
  const stringCap = Math.max(SHORT_STRING_CHARS, Math.floor(budget / 16));
  const ancestors = new Set<object>();
  const full = () => size >= budget - reserve || values >= SHRINK_MAX_VALUES;
  const emit = (s: string) => {
    out.push(s);
    size += s.length;
  };
  const small = (v: unknown) =>
    v === null || (typeof v === "string" ? v.length <= SHORT_STRING_CHARS : typeof v !== "object");
  const read = (get: () => unknown): unknown => {
    try {
      return get();
    } catch (e) {
      return `[unreadable: ${describe(e)}]`;
    }
  };
  /** The JSON of a leaf; undefined for what JSON leaves out; null for an object to walk. */
  const leaf = (v: unknown): string | undefined | null => {
    switch (typeof v) {
      case "string": {
        const room = Math.max(0, Math.min(stringCap, budget - reserve - size));
        if (v.length <= SHORT_STRING_CHARS || v.length <= room) return JSON.stringify(v);
        return JSON.stringify(`${v.slice(0, room)}…[truncated by agentd: ${v.length} chars]`);
      }
      case "number":
        return Number.isFinite(v) ? String(v) : "null";
      case "boolean":
        return v ? "true" : "false";
      case "bigint":
        return JSON.stringify(v.toString());
      case "object":
        return v === null ? "null" : null;
      default:
        return undefined; // functions, symbols, undefined
    }
  };
  const node = (v: unknown, depth: number): void => {
    const json = leaf(v);
    if (json === null) walk(v as object, depth);
    else emit(json ?? "null");
  };
  const walk = (v: object, depth: number): void => {
    if (ancestors.has(v)) return emit('"[circular]"');
    if (depth > 200) return emit('"[too deep]"');
    const mark = out.length;
    const markSize = size;
    ancestors.add(v);
    try {
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === "function") return node(toJSON.call(v), depth + 1);
      if (Array.isArray(v)) {
        const n = v.length;
        emit("[");
        let i = 0;
        for (; i < n && !full(); i++) {
          if (i) emit(",");
          values++;
          node(read(() => v[i]), depth + 1);
        }
        if (i < n) emit(`${i ? "," : ""}"…[truncated by agentd: ${n - i} more items]"`);
        emit("]");
        return;
      }
      const keys = Object.keys(v);
      const first: Array<[string, unknown]> = [];
      const rest: Array<[string, unknown]> = [];
      let omitted = keys.length;
      for (const key of keys) {
        if (values >= SHRINK_MAX_VALUES) break;
        values++;
        omitted--;
        const item = read(() => (v as Record<string, unknown>)[key]);
        (small(item) ? first : rest).push([key, item]);
      }
      emit("{");
      let written = 0;
      for (const entries of [first, rest]) {
        for (const [key, item] of entries) {
          if (full()) {
            omitted++;
            continue;
          }
          const json = leaf(item);
          if (json === undefined) continue;
          emit(`${written++ ? "," : ""}${JSON.stringify(key)}:`);
          if (json === null) walk(item as object, depth + 1);
          else emit(json);
        }
      }
      if (omitted) emit(`${written ? "," : ""}"…[truncated by agentd]":"${omitted} more keys"`);
      emit("}");
    } catch (e) {
      out.length = mark; // what this value wrote before it failed
      size = markSize;
      emit(JSON.stringify(`[unreadable: ${describe(e)}]`));
    } finally {
      ancestors.delete(v);
    }
  };
  node(root, 0);
  return out.join("");
}

// --- trust: what a shared machine's other users could plant -----------------------------------

/** Why `dir` is no directory to use, or null: it must be a real directory (not a symlink) of ours
 * that group and others cannot write. A missing one is fine (nothing listens there; the spool
 * makes its own 0700). The hook and the CLI check the same (daemon/agentd/trust.py). */
function dirRefusal(dir: string): string | null {
  const uid = process.getuid?.();
  if (uid === undefined) return null; // a platform without uids
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch {
    return null;
  }
  if (st.isSymbolicLink()) return `refusing ${dir}: it is a symbolic link`;
  if (!st.isDirectory()) return `refusing ${dir}: it is not a directory`;
  if (st.uid !== uid) return `refusing ${dir}: it is owned by uid ${st.uid}, not by you (uid ${uid})`;
  if (st.mode & 0o022) {
    const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
    return `refusing ${dir}: other users can write in it (mode ${mode}); it must be yours alone`;
  }
  return null;
}

/** Why the socket is not one to send to, or null. The hook also asks the kernel who the peer is
 * (SO_PEERCRED), which node:net cannot; here the socket file must be ours instead: in a directory
 * only we can write, only we (or root) can have made it. */
function socketRefusal(socketPath: string): string | null {
  const refused = dirRefusal(path.dirname(socketPath));
  if (refused) return refused;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return null; // nothing listens: connecting fails and the events are spooled
  }
  const uid = process.getuid?.();
  if (!st.isSocket()) return `refusing ${socketPath}: it is not a socket`;
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
    return `refusing ${socketPath}: it is owned by uid ${st.uid}, not by you (uid ${uid})`;
  }
  return null;
}

// --- the spool: docs/protocol.md "Spool" ------------------------------------------------------

class Spool {
  private fd: number | null = null;
  private file = "";
  private size = 0;
  private seq = 0;

  constructor(
    private readonly dir: string,
    private readonly stats: Stats,
  ) {}

  /** Append complete lines (each ending in "\n"), all or none: a write the disk cuts short (full
   * disk, quota) is cut back to the last whole line, since the lines stay queued and are written
   * again later, and a torn prefix before them would make that event's line unreadable. Throws
   * when it cannot. */
  write(lines: string): void {
    if (this.fd === null) this.open();
    const fd = this.fd as number;
    const data = Buffer.from(lines, "utf8");
    let done = 0;
    try {
      while (done < data.length) {
        // At an explicit position: after a cut-back the file offset would be past the end.
        const n = fs.writeSync(fd, data, done, data.length - done, this.size + done);
        if (n <= 0) throw new Error(`spool write of ${data.length} bytes wrote ${done}`);
        done += n;
      }
    } catch (e) {
      if (done > 0) {
        try {
          fs.ftruncateSync(fd, this.size);
        } catch {
          // Cannot cut it back: end this file (the daemon sets a torn last line aside), and write
          // the lines again into a new one.
          this.finish();
        }
      }
      throw e;
    }
    this.size += data.length;
    if (this.size >= SPOOL_FILE_MAX_BYTES) this.finish();
  }

  /** Close the open file and give it its final name: from then on the daemon may drain it. */
  finish(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    try {
      fs.closeSync(fd);
    } finally {
      fs.renameSync(this.file, this.file.slice(0, -".open".length));
    }
  }

  private open(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const refused = dirRefusal(this.dir);
    if (refused) throw new Error(refused);
    for (let tries = 0; ; tries++) {
      const unique = `${Date.now()}-${++this.seq}-${Math.random().toString(16).slice(2, 10)}`;
      const file = path.join(this.dir, `${SOURCE}-${process.pid}-${unique}.ndjson.open`);
      try {
        this.fd = fs.openSync(file, "wx", 0o600); // O_CREAT | O_EXCL: never someone else's file
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST" && tries < 5) continue;
        throw e;
      }
      this.file = file;
      this.size = 0;
      this.stats.spoolFiles++;
      return;
    }
  }
}

// --- the transport: one connection, a bounded queue, pipelined requests -------------------------

type State = "idle" | "connecting" | "connected" | "down";

class Transport {
  readonly stats: Stats = {
    enqueued: 0,
    acked: 0,
    spooled: 0,
    dropped: 0,
    resent: 0,
    connects: 0,
    spoolFiles: 0,
    errors: 0,
    lastError: "",
  };
  state: State = "idle";
  private queue: Item[] = []; // not sent yet, oldest first, from index `head`
  private head = 0;
  private inflight = new Map<number, Item>(); // sent, waiting for the ack; by request id
  private bytes = 0; // size of everything unacked
  private sock: net.Socket | null = null;
  private writable = true;
  private nextId = 1;
  private backoff = BACKOFF_MIN_MS;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private holdTimer: ReturnType<typeof setTimeout> | null = null; // no sends until it fires
  private holdDelay = BACKOFF_MIN_MS;
  private ackTimer: ReturnType<typeof setInterval> | null = null;
  private pumpScheduled = false;
  private buffer = "";
  private waiters: Array<() => void> = [];
  private flushing = 0;
  readonly spool: Spool;

  constructor(readonly settings: Settings) {
    this.spool = new Spool(settings.spoolDir, this.stats);
  }

  get pending(): number {
    return this.queue.length - this.head + this.inflight.size;
  }

  /** The hot path: O(1) plus, rarely, a synchronous spool write when the queue overflows. */
  enqueue(params: string): void {
    this.queue.push({ params, size: params.length, attempts: 0, id: 0, sentAt: 0 });
    this.bytes += params.length;
    this.stats.enqueued++;
    if (this.pending > MAX_QUEUE_ITEMS || this.bytes > MAX_QUEUE_BYTES) this.overflow();
    this.schedule();
  }

  start(): void {
    if (this.state === "idle") this.connect();
  }

  private schedule(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    try {
      if (this.state === "idle") this.connect();
      else if (this.state === "connected") this.send();
      else if (this.state === "down") this.spoolQueued();
    } catch (e) {
      this.error(e);
    }
  }

  private connect(): void {
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.state = "connecting";
    const refused = socketRefusal(this.settings.socketPath);
    if (refused) {
      this.error(new Error(refused));
      this.connectFailed(); // as if nobody listened: the events go to the spool
      return;
    }
    let sock: net.Socket;
    try {
      sock = net.createConnection({ path: this.settings.socketPath });
    } catch (e) {
      this.error(e);
      this.connectFailed();
      return;
    }
    this.sock = sock;
    this.buffer = "";
    this.writable = true;
    sock.setEncoding("utf8");
    sock.unref(); // never keep OpenCode alive: "exit" spools what is still unacked
    let connected = false;
    const connectTimer = setTimeout(() => {
      if (!connected && this.sock === sock) sock.destroy(); // "close" counts it as a failure
    }, CONNECT_TIMEOUT_MS);
    connectTimer.unref?.();
    sock.on("connect", () => {
      clearTimeout(connectTimer);
      if (this.sock !== sock) return;
      connected = true;
      this.state = "connected";
      this.backoff = BACKOFF_MIN_MS;
      this.stats.connects++;
      if (this.flushing) sock.ref();
      try {
        this.spool.finish(); // the daemon is back: let it drain what was spooled meanwhile
      } catch (e) {
        this.error(e);
      }
      this.pump();
    });
    sock.on("data", (chunk: string | Buffer) => this.onData(sock, String(chunk)));
    sock.on("drain", () => {
      if (this.sock !== sock) return;
      this.writable = true;
      this.pump();
    });
    sock.on("error", (e: Error) => this.error(connected ? e : this.connectError(e)));
    sock.on("close", () => {
      clearTimeout(connectTimer);
      if (this.sock !== sock) return;
      this.sock = null;
      this.requeueInflight(true);
      if (connected) {
        // A working connection went away (daemon restart?): try again at once, once.
        this.state = "idle";
        this.reconnectLater(BACKOFF_MIN_MS);
      } else {
        this.connectFailed();
      }
    });
  }

  /** Bun (1.3) reports a connect refused with EAGAIN, a listener whose backlog is full, as
   * ENOENT: when the socket is there, say what it means. */
  private connectError(e: Error): Error {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") return e;
    try {
      if (!fs.lstatSync(this.settings.socketPath).isSocket()) return e;
    } catch {
      return e; // really not there
    }
    return new Error(
      `connect ${this.settings.socketPath}: the socket is there but takes no connection now ` +
        "(its listen backlog is full: the daemon is busy or stuck)",
    );
  }

  private connectFailed(): void {
    this.state = "down";
    this.reconnectLater(this.backoff);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.pump(); // spools what waits
    this.wake();
  }

  private reconnectLater(delay: number): void {
    if (this.reconnectTimer) return;
    const timer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.state === "down" || this.state === "idle") this.connect();
    }, delay);
    timer.unref?.();
    this.reconnectTimer = timer;
  }

  private send(): void {
    const sock = this.sock;
    if (!sock || !this.writable || this.holdTimer) return;
    let batch = "";
    const now = Date.now();
    while (this.head < this.queue.length && this.inflight.size < MAX_IN_FLIGHT) {
      const item = this.queue[this.head];
      this.queue[this.head++] = undefined as unknown as Item;
      item.id = this.nextId++;
      item.sentAt = now;
      item.attempts++;
      if (item.attempts > 1) this.stats.resent++;
      this.inflight.set(item.id, item);
      batch += `{"jsonrpc":"2.0","id":${item.id},"method":"ingest","params":${item.params}}\n`;
      if (batch.length >= WRITE_CHUNK) {
        this.writable = sock.write(batch);
        batch = "";
        if (!this.writable) break;
      }
    }
    this.compact();
    if (batch) this.writable = sock.write(batch);
    if (this.inflight.size && !this.ackTimer) {
      this.ackTimer = setInterval(() => this.checkAcks(), 1_000);
      this.ackTimer.unref?.();
    }
  }

  private compact(): void {
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  private onData(sock: net.Socket, chunk: string): void {
    if (this.sock !== sock) return;
    this.buffer += chunk;
    let nl = this.buffer.indexOf("\n");
    while (nl >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      try {
        const reply = JSON.parse(line) as unknown;
        for (const r of Array.isArray(reply) ? reply : [reply]) this.onReply(r);
      } catch (e) {
        this.error(e);
      }
      nl = this.buffer.indexOf("\n");
    }
    if (!this.inflight.size && this.ackTimer) {
      clearInterval(this.ackTimer);
      this.ackTimer = null;
    }
    if (this.head < this.queue.length) this.send();
    this.wake();
  }

  private onReply(reply: unknown): void {
    if (!reply || typeof reply !== "object") return;
    const { id, result, error } = reply as { id?: unknown; result?: unknown; error?: unknown };
    const item = typeof id === "number" ? this.inflight.get(id) : undefined;
    if (!item) return;
    this.inflight.delete(item.id);
    if (result !== undefined) {
      this.bytes -= item.size;
      this.stats.acked++;
      this.holdDelay = BACKOFF_MIN_MS;
      return;
    }
    const code = (error as { code?: unknown } | null)?.code;
    this.stats.lastError = `daemon error ${String(code)}`;
    this.stats.errors++;
    if (code === -32002) {
      // The daemon is stopping: keep the event, and reconnect (or spool) like for a lost link.
      this.unshift([item]);
      this.sock?.destroy();
      return;
    }
    // It keeps failing (a full disk answers -32003 until space is freed), or the daemon will
    // never take it (-32602): the spool keeps it (spool/rejected/ for the latter). Else, or when
    // the spool cannot take it either (it may share the full disk), it waits in memory and is
    // sent again after a pause.
    const spool = code === -32602 || item.attempts >= MAX_ATTEMPTS;
    if (spool && this.spoolItems([item], true)) return;
    this.unshift([item]);
    this.hold();
  }

  /** Pause sending (backoff from 50 ms to 5 s, reset by an ack): an error answered at once must
   * not become a busy loop of resends. */
  private hold(): void {
    if (this.holdTimer) return;
    const timer = setTimeout(() => {
      this.holdTimer = null;
      this.pump();
    }, this.holdDelay);
    timer.unref?.();
    this.holdTimer = timer;
    this.holdDelay = Math.min(this.holdDelay * 2, BACKOFF_MAX_MS);
  }

  private checkAcks(): void {
    const now = Date.now();
    for (const item of this.inflight.values()) {
      if (now - item.sentAt > ACK_TIMEOUT_MS) {
        this.stats.lastError = "no ack in time";
        this.sock?.destroy(); // "close" requeues the in-flight events
        return;
      }
    }
  }

  /** In-flight events back to the front of the queue, in the order they were sent. Events sent
   * MAX_ATTEMPTS times go to the spool (the daemon may have committed them: replays are stored
   * once), or, when the spool fails, back to the queue with the others. */
  private requeueInflight(countAttempt: boolean): void {
    if (!this.inflight.size) return;
    const items = [...this.inflight.values()].sort((a, b) => a.id - b.id);
    this.inflight.clear();
    if (this.ackTimer) {
      clearInterval(this.ackTimer);
      this.ackTimer = null;
    }
    const again = countAttempt ? items.filter((i) => i.attempts < MAX_ATTEMPTS) : items;
    if (again.length < items.length && !this.spoolItems(items.filter((i) => !again.includes(i)), false)) {
      this.unshift(items);
      return;
    }
    this.unshift(again);
  }

  private unshift(items: Item[]): void {
    if (!items.length) return;
    this.queue = items.concat(this.queue.slice(this.head));
    this.head = 0;
  }

  private overflow(): void {
    // The oldest unsent events go to the spool until a quarter of the room is free again.
    const items: Item[] = [];
    let bytes = this.bytes;
    let count = this.pending;
    while (
      this.head < this.queue.length &&
      (count > (MAX_QUEUE_ITEMS * 3) / 4 || bytes > (MAX_QUEUE_BYTES * 3) / 4)
    ) {
      const item = this.queue[this.head];
      this.queue[this.head++] = undefined as unknown as Item;
      items.push(item);
      bytes -= item.size;
      count--;
    }
    this.compact();
    if (!this.spoolItems(items, this.state === "connected")) {
      // Neither the daemon nor the spool takes them: drop the oldest, keep memory bounded.
      this.stats.dropped += items.length;
      this.bytes -= items.reduce((n, i) => n + i.size, 0);
    }
  }

  private spoolQueued(): void {
    if (this.head >= this.queue.length) return;
    const items = this.queue.slice(this.head);
    if (this.spoolItems(items, false)) {
      this.queue = [];
      this.head = 0;
    }
  }

  /** Append events to the spool; false (and the events untouched) when that fails. */
  private spoolItems(items: Item[], finish: boolean): boolean {
    if (!items.length) return true;
    try {
      let lines = "";
      for (const item of items) lines += `${item.params}\n`;
      this.spool.write(lines);
      if (finish) this.spool.finish();
    } catch (e) {
      this.error(e);
      return false;
    }
    this.stats.spooled += items.length;
    for (const item of items) this.bytes -= item.size;
    return true;
  }

  /** Everything unacked to the spool, synchronously, and the file finished: for dispose, exit and
   * signals. Events in flight may already be committed; replaying them is harmless. When the
   * spool fails they stay in memory, unless `final` (the process ends): then they are dropped,
   * and counted. */
  spoolAll(final = false): void {
    try {
      const items = [...this.inflight.values()].sort((a, b) => a.id - b.id);
      items.push(...this.queue.slice(this.head));
      const spooled = this.spoolItems(items, false);
      if (spooled || final) {
        if (!spooled) {
          this.stats.dropped += items.length;
          this.bytes -= items.reduce((n, i) => n + i.size, 0);
        }
        this.inflight.clear();
        this.queue = [];
        this.head = 0;
      }
      this.spool.finish();
    } catch (e) {
      this.error(e);
    }
    this.wake();
  }

  /** Resolves once everything is acked, or after `ms` with the rest spooled. Never rejects. */
  flush(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.flushing++;
      this.sock?.ref(); // hold the process open while the acks come (bounded by the timer)
      let timer: ReturnType<typeof setTimeout> | null = null;
      const done = () => {
        if (timer === null) return;
        clearTimeout(timer);
        timer = null;
        this.flushing--;
        if (!this.flushing) this.sock?.unref();
        if (this.pending) this.spoolAll();
        else this.finishSpool();
        resolve();
      };
      timer = setTimeout(done, ms);
      this.waiters.push(done);
      this.pump();
      this.wake();
    });
  }

  private wake(): void {
    if (this.pending && this.state !== "down") return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  finishSpool(): void {
    try {
      this.spool.finish();
    } catch (e) {
      this.error(e);
    }
  }

  /** Close the connection (the last OpenCode instance is gone); a later event reconnects. */
  close(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const sock = this.sock;
    if (sock) {
      this.sock = null;
      this.requeueInflight(false);
      sock.destroy();
    }
    this.state = "idle";
  }

  private error(e: unknown): void {
    this.stats.errors++;
    this.stats.lastError = describe(e);
  }
}

// --- process-wide state: one transport, however many instances and copies of this plugin -------

type Shared = { transport: Transport; instances: number; record: typeof record };

function shared(): Shared {
  const g = globalThis as unknown as Record<symbol, Shared | undefined>;
  let s = g[SHARED];
  if (!s) {
    const transport = new Transport(resolveSettings(process.env));
    s = { transport, instances: 0, record };
    g[SHARED] = s;
    installExitHandlers(transport);
    transport.start();
  }
  return s;
}

function installExitHandlers(transport: Transport): void {
  process.on("exit", () => transport.spoolAll(true));
  let flushing = false;
  let flushedAt = -1;
  process.on("beforeExit", () => {
    // The event loop ran dry (nothing of OpenCode's left): deliver what is unacked, briefly. Once
    // per batch of events: what neither the daemon nor the spool took in that time is not worth
    // keeping the process alive for ("exit" counts it as dropped).
    if (flushing || !transport.pending || transport.stats.enqueued === flushedAt) return;
    flushedAt = transport.stats.enqueued;
    flushing = true;
    void transport.flush(BEFORE_EXIT_FLUSH_MS).then(() => {
      flushing = false;
    });
  });
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    const onSignal = () => {
      // Someone else handles the signal (OpenCode): they exit or not, and "exit" spools then.
      if (process.listenerCount(signal) > 1) return;
      // Only ours: the default action (termination) was the behaviour; keep it, after the spool.
      transport.spoolAll(true);
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    try {
      process.on(signal, onSignal);
    } catch {
      /* a runtime without this signal */
    }
  }
}

/** Serialize one callback's arguments and enqueue them. Never throws. */
function record(transport: Transport, payload: Record<string, unknown>): void {
  const receivedAt = Date.now();
  let json = serialize(payload);
  const limit = transport.settings.maxLineBytes - ENVELOPE_BYTES;
  if (json.length * 3 > limit) {
    const bytes = utf8Length(json);
    if (bytes > limit) json = shrink(payload, bytes, limit - 64);
  }
  transport.enqueue(`{"source":"${SOURCE}","received_at":${receivedAt},"payload":${json}}`);
}

// --- what is forwarded ------------------------------------------------------------------------

/** Provider and model objects minus what may hold credentials (API keys, auth headers) and the
 * provider's model catalogue (large, and circular). chat.params and experimental.compaction.
 * autocontinue carry them; what is kept (ids, name, limits, cost, capabilities) is what describes
 * the call. */
function withoutSecrets(input: unknown): unknown {
  if (!input || typeof input !== "object") return input;
  const { provider, model, ...rest } = input as Record<string, unknown>;
  const out: Record<string, unknown> = { ...rest };
  if (provider && typeof provider === "object") {
    const p = provider as Record<string, unknown>;
    const info = (p.info && typeof p.info === "object" ? p.info : p) as Record<string, unknown>;
    out.provider = { id: info.id, name: info.name, source: p.source ?? info.source };
  } else if (provider !== undefined) out.provider = provider;
  if (model && typeof model === "object") {
    const { headers: _h, options: _o, ...m } = model as Record<string, unknown>;
    out.model = m;
  } else if (model !== undefined) out.model = model;
  return out;
}

function callback(kind: string, clean?: (input: unknown) => unknown) {
  return (input: unknown, output: unknown): Promise<void> => {
    try {
      const s = shared();
      let payload: Record<string, unknown>;
      try {
        payload = { kind, input: clean ? clean(input) : input, output };
      } catch (e) {
        payload = { kind, input: null, output, agentd_unserializable: describe(e) };
      }
      s.record(s.transport, payload);
    } catch {
      /* never into OpenCode */
    }
    return DONE;
  };
}

export const AgentdPlugin: Plugin = async (ctx: PluginInput): Promise<Hooks> => {
  try {
    const s = shared();
    // Installed twice (user and project scope), both copies load: only the first forwards, so
    // each event is sent once.
    const directory = (() => {
      try {
        return String(ctx?.directory ?? "");
      } catch {
        return "";
      }
    })();
    const g = globalThis as unknown as Record<symbol, Map<string, object> | undefined>;
    const claims = (g[CLAIMS] ??= new Map<string, object>());
    const owner = claims.get(directory);
    if (owner && owner !== THIS_COPY) return {};
    claims.set(directory, THIS_COPY);
    s.instances++;
    const skip = s.transport.settings.skipEvents;
    let disposed = false;
    return {
      event: (input: unknown): Promise<void> => {
        try {
          const event = (input as { event?: unknown } | null | undefined)?.event;
          const type = (event as { type?: unknown } | null | undefined)?.type;
          if (typeof type === "string" && skip.has(type)) return DONE;
          s.record(s.transport, { kind: "event", event });
        } catch (e) {
          try {
            s.record(s.transport, { kind: "event", agentd_unserializable: describe(e) });
          } catch {
            /* never into OpenCode */
          }
        }
        return DONE;
      },
      "chat.message": callback("chat.message"),
      "chat.params": callback("chat.params", withoutSecrets),
      "command.execute.before": callback("command.execute.before"),
      "tool.execute.before": callback("tool.execute.before"),
      "tool.execute.after": callback("tool.execute.after"),
      "permission.ask": callback("permission.ask"),
      "experimental.session.compacting": callback("experimental.session.compacting"),
      "experimental.compaction.autocontinue": callback(
        "experimental.compaction.autocontinue",
        withoutSecrets,
      ),
      dispose: async (): Promise<void> => {
        try {
          if (disposed) return;
          disposed = true;
          s.instances--;
          if (claims.get(directory) === THIS_COPY) claims.delete(directory);
          await s.transport.flush(DISPOSE_FLUSH_MS);
          if (s.instances <= 0) s.transport.close();
        } catch {
          /* never into OpenCode */
        }
      },
    } as Hooks;
  } catch {
    return {};
  }
};
