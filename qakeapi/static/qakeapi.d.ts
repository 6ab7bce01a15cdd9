// Types of qakeapi.js, the browser client of a QakeAPI WebSocket server.

export declare const VERSION: string;
export declare const NO_RECONNECT_CODES: readonly number[];
export declare const SILENCE_CLOSE_CODE: 4000;
export declare const State: Readonly<{ DISCONNECTED: "disconnected"; CONNECTING: "connecting"; CONNECTED: "connected" }>;
export type ConnectionState = "disconnected" | "connecting" | "connected";

export declare function backoff(attempt: number, min?: number, max?: number, random?: () => number): number;
export declare function tokenExpiry(token: string): number | null;

export interface Position {
  epoch: string;
  offset: number;
}

export interface Member {
  connection: string;
  user: string | null;
  node: string;
}

export interface ClientOptions {
  token?: string | null;
  getToken?: (() => Promise<string> | string) | null;
  tokenCarrier?: "subprotocol" | "query";
  queryParam?: string;
  protocols?: string[];
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  refreshBefore?: number;
  silenceTimeout?: number;
  noReconnectCodes?: readonly number[];
  WebSocket?: typeof WebSocket;
  debug?: boolean;
}

export interface ErrorDetail {
  kind: "send" | "token" | "connect" | "decode" | "socket" | "closed" | "auth" | "server" | "lost" | "silence";
  error: Error;
  [extra: string]: unknown;
}

export interface ClientEventMap {
  state: CustomEvent<{ state: ConnectionState; previous: ConnectionState }>;
  connecting: CustomEvent<Record<string, never>>;
  connected: CustomEvent<Record<string, never>>;
  disconnected: CustomEvent<{ code: number; reason: string; reconnect: boolean; delay: number | null }>;
  message: CustomEvent<{ data: unknown }>;
  auth: CustomEvent<{ user: string; expiresAt: number | null }>;
  error: CustomEvent<ErrorDetail>;
}

export interface RoomEventMap {
  publication: CustomEvent<{ room: string; data: unknown; epoch: string | null; offset: number | null }>;
  joined: CustomEvent<{ room: string; you: string | null; members: Member[]; frame: Record<string, unknown> }>;
  recovered: CustomEvent<{ room: string; replayed: number }>;
  unrecovered: CustomEvent<{ room: string; reason: string | null; epoch: string | null; offset: number | null }>;
  presence: CustomEvent<{ room: string; members: Member[]; joins: Member[]; leaves: Member[]; reason?: string }>;
  gap: CustomEvent<{ room: string; from: number; to: number }>;
  left: CustomEvent<{ room: string }>;
}

export declare class Room extends EventTarget {
  readonly client: Client;
  readonly name: string;
  wanted: boolean;
  joined: boolean;
  position: Position | null;
  members: Map<string, Member>;
  you: string | null;
  join(extra?: Record<string, unknown>): void;
  leave(): void;
  addEventListener<K extends keyof RoomEventMap>(type: K, listener: (event: RoomEventMap[K]) => void): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null): void;
}

export declare class Client extends EventTarget {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  state: ConnectionState;
  token: string | null;
  rooms: Map<string, Room>;
  attempt: number;
  connect(): void;
  disconnect(code?: number, reason?: string): void;
  room(name: string): Room;
  send(message: unknown): boolean;
  addEventListener<K extends keyof ClientEventMap>(type: K, listener: (event: ClientEventMap[K]) => void): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null): void;
}
