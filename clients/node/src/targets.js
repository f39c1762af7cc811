// Where a channel goes: one address, a resolver target, or a comma list of the replicas of a
// service, as the Python and Go clients take them.
//
// - one address (`host:port`, `unix:/path`, any gRPC target such as `dns:///svc.ns:50051`): a
//   resolver target (`dns:///...`) may name several replicas and is balanced round robin; one plain
//   address keeps gRPC's default policy (pick_first);
// - a comma list of the replicas of one service: `10.0.0.5:50051,10.0.0.6:50051`,
//   `unix:/run/a.sock,unix:/run/b.sock`, `[fd00::5]:50051,[fd00::6]:50051` or names
//   (`sched-a:50051,sched-b:50051`, each looked up when the channel resolves). gRPC's own list
//   forms `ipv4:A,B`, `ipv6:A,B` and `unix:/a,/b` are taken too.
//
// A list is balanced with gRPC's round_robin policy: each call (a stream: for its whole life) goes
// to a replica that is connected, and a replica that goes away is left out until it is back. A list
// is read by a resolver of this module (grpc-js's own resolvers take one unix path and IP addresses
// only), registered under the scheme `tasktide-replicas` the first time a list is used. With TLS,
// the certificate is checked against the first name of a list (else its first address; for unix
// sockets, `localhost`), so the replicas' certificates must all carry it.

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

import grpc from '@grpc/grpc-js';

export const ROUND_ROBIN = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });
const SCHEME = 'tasktide-replicas';

function bad(address, why) {
  return new TypeError(`invalid address list ${JSON.stringify(address.slice(0, 200))}: ${why}`);
}

/** [host, port] of `host:port` or `[v6]:port`, or null. */
function hostPort(entry) {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(entry);
  if (!m) return null;
  const port = Number(m[3]);
  return port > 0 && port < 65536 ? [m[1] ?? m[2], port] : null;
}

/**
 * The replicas of a list: `{unix: [paths]}` or `{tcp: [[host, port, entry]]}`; a TypeError says
 * what is wrong with it.
 */
export function parseList(address, entries) {
  if (entries.some((e) => !e)) throw bad(address, 'an empty entry');
  const unix = entries.filter((e) => e.startsWith('unix:')).length;
  if (unix && unix < entries.length) throw bad(address, 'unix sockets and TCP addresses cannot be mixed');
  if (unix) {
    const paths = entries.map((e) => e.slice('unix:'.length).replace(/^\/\//, ''));
    const empty = paths.findIndex((p) => !p);
    if (empty >= 0) throw bad(address, `${JSON.stringify(entries[empty])} names no socket path`);
    return { unix: paths };
  }
  if (entries.some((e) => e.includes('/'))) {
    throw bad(address, 'a list takes HOST:PORT entries; for a resolver target (dns:///...) give it alone');
  }
  return {
    tcp: entries.map((e) => {
      const hp = hostPort(e);
      if (!hp) throw bad(address, `${JSON.stringify(e)} is not HOST:PORT (or unix:/path)`);
      return [...hp, e];
    }),
  };
}

function entriesOf(address) {
  const entries = address.split(',').map((e) => e.trim());
  if (/^ipv[46]:/.test(entries[0])) entries[0] = entries[0].slice(5);
  if (entries.length > 1 && entries[0].startsWith('unix:')) {
    for (let i = 1; i < entries.length; i++) if (entries[i].startsWith('/')) entries[i] = `unix:${entries[i]}`;
  }
  return entries;
}

/** The name the certificates are checked against: the first name of a list, else its first entry. */
function authority(list) {
  if (list.unix) return 'localhost';
  return (list.tcp.find(([host]) => !isIP(host)) ?? list.tcp[0])[2];
}

// Reads the list in the target's path. A name gives one endpoint with every address it resolves
// to (one replica, its addresses tried in turn); a name that does not resolve is left out, and the
// resolution fails only when no replica is left. As grpc-js's own fixed resolvers, it answers once
// (again after the channel was idle): names are looked up once, as the Python client does; a
// failed resolution is tried again when the channel asks, after its backoff.
class ReplicaListResolver {
  constructor(target, listener) {
    this.list = parseList(target.path, entriesOf(target.path));
    this.listener = listener;
    this.state = 'new'; // 'pending' | 'done'
  }

  updateResolution() {
    if (this.state !== 'new') return;
    this.state = 'pending';
    this.resolve().then((result) => {
      this.state = result.ok ? 'done' : 'new';
      if (this.listener) this.listener(result, {}, null, '');
    });
  }

  async resolve() {
    const { experimental } = grpc;
    if (this.list.unix) return experimental.statusOrFromValue(this.list.unix.map((path) => ({ addresses: [{ path }] })));
    const failures = [];
    const endpoints = await Promise.all(
      this.list.tcp.map(async ([host, port]) => {
        if (isIP(host)) return { addresses: [{ host, port }] };
        try {
          const found = await lookup(host, { all: true });
          return { addresses: found.map((a) => ({ host: a.address, port })) };
        } catch (err) {
          failures.push(`cannot resolve ${host}: ${err.code ?? err.message}`);
          return null;
        }
      }),
    );
    const up = endpoints.filter((e) => e && e.addresses.length);
    if (up.length) return experimental.statusOrFromValue(up);
    const details = failures.join('; ') || 'no address';
    return experimental.statusOrFromError({ code: grpc.status.UNAVAILABLE, details, metadata: new grpc.Metadata() });
  }

  destroy() {
    this.state = 'new';
  }

  static getDefaultAuthority(target) {
    return authority(parseList(target.path, entriesOf(target.path)));
  }
}

let registered = false;

/**
 * `{target, options}` for an address setting: the gRPC target and the channel options that go with
 * it. A TypeError says what is wrong with a list.
 */
export function channelTarget(address) {
  const entries = entriesOf(address);
  if (entries.length === 1 && !/^ipv[46]:/.test(address)) {
    const one = entries[0];
    if (!one) throw bad(address, 'empty');
    // A resolver target (dns:///...) may name several replicas: balanced. One address keeps
    // pick_first, which reconnects when the next call comes.
    const resolverTarget = one.includes('/') && !one.startsWith('unix:');
    return { target: one, options: resolverTarget ? { 'grpc.service_config': ROUND_ROBIN } : {} };
  }
  parseList(address, entries);
  if (!registered) {
    grpc.experimental.registerResolver(SCHEME, ReplicaListResolver);
    registered = true;
  }
  return { target: `${SCHEME}:///${entries.join(',')}`, options: { 'grpc.service_config': ROUND_ROBIN } };
}
