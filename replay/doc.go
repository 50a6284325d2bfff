// Package replay is espy's offline analysis: it streams captures through the
// packet decoder, the flow cache and the RFC 5879 engine, and writes verdict
// records, a summary table and, optionally, the decapsulated cleartext of
// null flows as a new capture.
package replay
