// Package ike is espy's IKEv2 stack (RFC 7296): the IKE_SA_INIT and
// IKE_AUTH exchanges with pre-shared keys or certificates, as initiator and
// as responder, establishing IKE SAs and ESP Child SAs over UDP, with
// cookies, INVALID_KE_PAYLOAD recovery, NAT detection and the switch to the
// NAT-T port (RFC 3948 non-ESP marker), retransmission with exponential
// back-off, additional Child SAs, Child SA (optionally with PFS) and IKE SA
// rekeying with CREATE_CHILD_SA in either direction with collision
// resolution, lifetimes (rekey, reauthentication, hard expiry), and a hook
// (SARegistrar) that reports every Child SA, NULL-encrypted or not, with its
// exact algorithms to espy's flow cache.
//
// Message encoding lives in package ike/message and the cryptography in
// ike/ikecrypto. docs/ike.md describes the state machine and its limits.
package ike
