// How the client reaches the platform: channel credentials, channel options (keepalive and message
// size defaults), interceptors and the bearer token, read once when the Client is made and shared by
// every stub it opens.
//
// Options (all optional):
//   credentials      grpc ChannelCredentials (default: TLS when TASKTIDE_TLS_CA, or
//                    TASKTIDE_TLS_CERT with TASKTIDE_TLS_KEY, name PEM files: the CA that signs the
//                    platform, and a client certificate for mutual TLS; else `tls: true` for TLS
//                    with the system's roots; else insecure)
//   callCredentials  grpc CallCredentials, composed with TLS channel credentials
//   token            sent as `authorization: Bearer TOKEN` on every call (default TASKTIDE_TOKEN)
//   channelOptions   grpc channel options, over the defaults below
//   interceptors     grpc-js client interceptors, run in order before the token is added

import { readFileSync } from 'node:fs';

import grpc from '@grpc/grpc-js';

import { channelTarget } from './targets.js';

export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export const DEFAULT_CHANNEL_OPTIONS = Object.freeze({
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  // A ping every 10 s while calls are open, the connection dropped when one is not answered within
  // 5 s: a server that froze (SIGSTOP, a host that stopped answering) keeps its connection open, and
  // calls sent there would wait as long as it does. The policy of the Python and Go clients and of
  // the services' calls to each other; the platform's servers accept pings every 5 s.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 0,
  // Reconnection after a failed connection: from 200 ms, 1.6 times longer after each failure, up to
  // 5 s (gRPC's own defaults reach 120 s): the policy of the Python and Go clients and of the
  // services' calls to each other, so a service that comes back is reached within seconds.
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 5_000,
});

/** An interceptor adding `authorization: Bearer TOKEN` to the metadata of every call. */
export function bearerInterceptor(token) {
  const value = `Bearer ${token}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', value);
        next(metadata, listener);
      },
    });
}

function readPem(path, variable) {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${variable} ${path}: ${err.code ?? err.message}`);
  }
}

/** TLS credentials from TASKTIDE_TLS_CA / TASKTIDE_TLS_CERT / TASKTIDE_TLS_KEY, or null if none is set. */
export function credentialsFromEnv(env = process.env) {
  const ca = env.TASKTIDE_TLS_CA || '';
  const cert = env.TASKTIDE_TLS_CERT || '';
  const key = env.TASKTIDE_TLS_KEY || '';
  if (!ca && !cert && !key) return null;
  if (!cert !== !key) throw new Error('a client certificate needs both TASKTIDE_TLS_CERT and TASKTIDE_TLS_KEY');
  return grpc.credentials.createSsl(
    ca ? readPem(ca, 'TASKTIDE_TLS_CA') : null,
    key ? readPem(key, 'TASKTIDE_TLS_KEY') : null,
    cert ? readPem(cert, 'TASKTIDE_TLS_CERT') : null,
  );
}

/** The settings every stub of one Client is made with. */
export function connectionSettings(options = {}, env = process.env) {
  let credentials =
    options.credentials ?? credentialsFromEnv(env) ?? (options.tls ? grpc.credentials.createSsl() : null);
  if (options.callCredentials) {
    if (!credentials) throw new TypeError('callCredentials need TLS channel credentials (credentials or tls: true)');
    credentials = grpc.credentials.combineChannelCredentials(credentials, options.callCredentials);
  }
  const token = options.token ?? env.TASKTIDE_TOKEN ?? '';
  if (typeof token !== 'string') throw new TypeError('token must be a string');
  const interceptors = [...(options.interceptors ?? [])];
  if (token) interceptors.push(bearerInterceptor(token));
  return {
    credentials: credentials ?? grpc.credentials.createInsecure(),
    channelOptions: { ...DEFAULT_CHANNEL_OPTIONS, ...(options.channelOptions ?? {}) },
    interceptors,
  };
}

/**
 * A stub of the tasktide.v1 service `Service` (a generated constructor) at `address`: one address,
 * a resolver target or a comma list of replicas (targets.js).
 */
export function openStub(Service, address, settings) {
  const { target, options } = channelTarget(address);
  return new Service(target, settings.credentials, {
    ...options,
    ...settings.channelOptions,
    interceptors: settings.interceptors,
  });
}

/**
 * Run `start()` (which returns a grpc call) until it ends or `signal` aborts: an abort cancels the
 * call and rejects with the signal's reason. Resolves with the call's response.
 */
export function abortable(signal, start) {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    let call = null;
    const onAbort = () => {
      call?.cancel();
      reject(signal.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    call = start((err, response) => {
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(response);
    });
  });
}
