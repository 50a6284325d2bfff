// Package espsynth generates labelled IPsec ESP traffic (RFC 4303) for testing
// and benchmarking ESP-NULL classifiers.
//
// Every ESP packet is real: payloads are padded as RFC 4303 prescribes,
// encrypted with the flow's cipher and key, and carry an ICV computed with the
// flow's integrity key, so a peer holding the keys could verify and decrypt
// it. NULL-encrypted flows (and ENCR_NULL_AUTH_AES_GMAC, RFC 4543) carry their
// inner traffic in cleartext; the inner TCP, UDP, ICMP, ICMPv6 and SCTP
// headers carry correct checksums.
//
// A Generator interleaves the packets of many flows, optionally mixed with
// non-ESP background traffic (plain TCP/UDP, IKE on UDP 500 and 4500, NAT-T
// keepalives), and describes every ESP flow with a Label in the JSON-lines
// format of the shared development corpus, so classifier verdicts can be
// scored against it. Output is deterministic for a given seed and Config.
package espsynth
