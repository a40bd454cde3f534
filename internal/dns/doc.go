// Package dns is the resolver sbx runs for its sandboxes. It listens on UDP
// and TCP port 53 of the bridge's gateway address (the only resolver in a
// sandbox's /etc/resolv.conf, and the only one its firewall lets it query)
// and forwards queries to upstream resolvers from the host.
//
// It tells sandboxes apart by source address (Sandboxes.Lookup; the
// network pins each sandbox's address at its bridge port, so it cannot be
// forged). A query from an address that is no sandbox's is REFUSED. A
// sandbox without a name allow-list gets every query forwarded. For one
// with network.Policy.AllowNames:
//
//   - a name that the list does not match ("api.example.com" matches only
//     itself, "*.example.com" any name strictly below example.com; case
//     does not matter) is answered NXDOMAIN at once, with an Extended DNS
//     Error "Blocked" when the query has EDNS, and never reaches upstream.
//     NXDOMAIN rather than REFUSED because stub resolvers then fail at once
//     instead of trying the next server or search domain;
//   - a matching name is forwarded; the A records of the answer (those of
//     the name and of the CNAME chain that starts at it; CNAME targets need
//     not match the list) are opened in the sandbox's firewall set
//     (Sandboxes.AllowResolved) before the answer is sent, so the connect
//     that follows is allowed. Each entry lives at least as long as the
//     TTL the sandbox is told: TTLs are capped at Config.MaxTTL in the
//     answer, and entries live the largest A TTL clamped to
//     [MinTTL, MaxTTL]. Records that are not on the chain, and the
//     authority and additional sections, are dropped.
//
// AAAA queries get an empty answer (NOERROR, no records) without asking
// upstream: sandboxes have IPv4 only, and an empty answer makes clients use
// IPv4 at once. There is no cache: upstream resolvers cache.
//
// Everything is bounded: a query's size (Config.MaxQuerySize), queries in
// flight per sandbox and in total (over that: SERVFAIL), TCP connections,
// each upstream attempt's time, the A records opened per answer and (in
// internal/network) the live entries of a sandbox's set.
package dns
