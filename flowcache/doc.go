// Package flowcache keeps bounded per-flow state for ESP flows: the evidence
// of undecided flows and the verdicts of decided ones, with packet and byte
// counters, idle expiry and events (decided, revoked, expired).
//
// A flow is one SA as seen on the wire: outer source and destination address
// and SPI. Encapsulation ports are kept in the entry, not the key, so a flow
// that moves between plain and UDP-encapsulated ESP (or whose NAT mapping
// changes) stays one entry; the BPF verdict map, whose key has the ports,
// gets one key per carrier for the same entry.
//
// Undecided flows live in a separate, preallocated pool with first-in
// first-out eviction, so a flood of one-packet SPIs churns that pool and
// never evicts a decided flow. A full decided table evicts the lowest
// ranked of 8 flows sampled at random: first flows not seen since their
// decision, then by the binary magnitude of how often they were seen again
// (packets through Process; for the inline daemon, looks of the fast path
// that found packets, Touch, one per 100 ms) within the last 10 s, then the
// least recently seen. So a flood of one-packet flows, however fast it
// turns the table over, evicts its own flows, not a flow with traffic; a
// flooder who sends k packets per SPI competes only with flows seen fewer
// than about k times, and to match a flow the fast path has seen for s
// seconds it must keep each SPI alive and sending, in the table, for at
// least s/2 seconds (docs/inline-perf.md, section 6). Both tables are sharded by key hash with one
// mutex per shard; per-packet calls do not allocate once a flow exists.
package flowcache
