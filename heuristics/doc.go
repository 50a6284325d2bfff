// Package heuristics decides, from the first packets of an ESP flow and
// without keys, whether the flow carries cleartext (ESP with NULL encryption,
// or ENCR_NULL_AUTH_AES_GMAC) or encrypted payload, as RFC 5879 describes, and
// for cleartext flows finds the ICV length, IV length, next header and mode.
//
// Where RFC 5879's pseudocode falls short, the engine does better:
//
//   - Each candidate (IV length, ICV length) parse of a packet earns evidence
//     measured in bits: the base-2 logarithm of how unlikely it is that
//     random (encrypted) bytes pass the checks that held. A valid inner IPv4
//     header checksum is 16 bits, four pad bytes 1,2,3,4 are 32 bits, and so
//     on (see evidence.go). A flow is called null when one candidate gathers
//     Config.Threshold bits with a margin over every other candidate, which
//     can happen on the very first packet.
//   - An unknown next header makes a flow unknown, never encrypted.
//   - Bad checksums add no evidence but never reject (NAT rewrites them), and
//     an inner length shorter than the payload is TFC padding, not failure.
//   - A null verdict is withdrawn only when garbage persists (RFC 5879's 50%
//     in one second or 95% over ten seconds, with a floor of packets), so a
//     few injected junk packets cannot flip a flow, and packets the receiver
//     would drop as replays are not counted at all.
//   - A new SPI between the same peers that carries inner flows already seen
//     in a null flow (a rekey) is decided at once, and WESP (RFC 5840) is
//     read and cross-checked instead of guessed.
//
// Per-packet methods do not allocate.
package heuristics
