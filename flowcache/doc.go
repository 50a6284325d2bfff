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
// never evicts a decided flow. Both tables are sharded by key hash with one
// mutex per shard; per-packet calls do not allocate once a flow exists.
package flowcache
