// Package inline is espy's appliance: it loads the XDP fast path on one
// interface (monitor mode) or two (a bump-in-the-wire bridge), decides the
// ESP flows the fast path samples with the RFC 5879 engine and the flow
// cache, writes their verdicts into the BPF verdict map, expires idle flows
// by their BPF counters, and reports verdicts as JSON lines and metrics for
// Prometheus.
package inline
