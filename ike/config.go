package ike

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// Identity is the content of an IDi or IDr payload.
type Identity struct {
	Type message.IDType
	Data []byte
}

// FQDN returns an ID_FQDN identity.
func FQDN(name string) Identity { return Identity{Type: message.IDFQDN, Data: []byte(name)} }

// AddrIdentity returns an ID_IPV4_ADDR or ID_IPV6_ADDR identity.
func AddrIdentity(a netip.Addr) Identity {
	if a.Is4() {
		return Identity{Type: message.IDIPv4Addr, Data: a.AsSlice()}
	}
	return Identity{Type: message.IDIPv6Addr, Data: a.AsSlice()}
}

func (id Identity) String() string {
	switch id.Type {
	case message.IDFQDN, message.IDRFC822Addr:
		return string(id.Data)
	case message.IDIPv4Addr, message.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	}
	return fmt.Sprintf("id(%d:%x)", id.Type, id.Data)
}

func (id Identity) equal(o Identity) bool {
	return id.Type == o.Type && string(id.Data) == string(o.Data)
}

// Mode is the ESP encapsulation mode of a Child SA.
type Mode uint8

// Modes.
const (
	ModeTunnel Mode = iota
	ModeTransport
)

func (m Mode) String() string {
	if m == ModeTransport {
		return "transport"
	}
	return "tunnel"
}

// CertPolicy says when this side sends its certificates (RFC 7296 3.6,
// 3.7).
type CertPolicy uint8

// Certificate policies.
const (
	// CertSendIfAsked sends the chain when the peer sent a CERTREQ (in
	// the IKE_SA_INIT response for an initiator, in the IKE_AUTH request
	// for a responder).
	CertSendIfAsked CertPolicy = iota
	// CertSendAlways sends the chain in every IKE_AUTH.
	CertSendAlways
	// CertSendNever never sends certificates: the peer must have ours.
	CertSendNever
)

// Retransmit is the request retransmission schedule: the n-th
// retransmission (n from 0) is sent Timeout × Base^n after the previous
// send, capped at Limit; after Tries retransmissions and one more timeout
// the exchange fails with ErrTimeout.
type Retransmit struct {
	Timeout time.Duration
	Base    float64
	Tries   int
	Limit   time.Duration // 0: no cap on a single interval
}

// DefaultNATKeepalive is strongSwan's keep_alive default.
const DefaultNATKeepalive = 20 * time.Second

// DefaultRetransmit matches strongSwan's defaults (retransmit_timeout 4 s,
// retransmit_base 1.8, retransmit_tries 5): about 165 s in total.
var DefaultRetransmit = Retransmit{Timeout: 4 * time.Second, Base: 1.8, Tries: 5}

// interval returns the wait after send number n (0 = first send).
func (r Retransmit) interval(n int) time.Duration {
	d := float64(r.Timeout)
	for i := 0; i < n; i++ {
		d *= r.Base
	}
	if r.Limit > 0 && time.Duration(d) > r.Limit {
		return r.Limit
	}
	return time.Duration(d)
}

// Total returns the longest time an exchange can take before ErrTimeout.
func (r Retransmit) Total() time.Duration {
	var t time.Duration
	for n := 0; n <= r.Tries; n++ {
		t += r.interval(n)
	}
	return t
}

// Config is the policy of one connection, used by the initiator for what it
// proposes and by the responder for what it accepts.
type Config struct {
	LocalID  Identity
	RemoteID Identity // the identity the peer must prove; empty: any
	PSK      []byte   // pre-shared key (RFC 7296 2.15)

	// Certificates (leaf first, then intermediates) and PrivateKey make
	// this side authenticate with an RFC 7427 digital signature instead of
	// the PSK.
	Certificates []*x509.Certificate
	PrivateKey   crypto.Signer
	// RootCAs, when set, makes this side require the peer to authenticate
	// with a certificate chaining to one of them whose subject alternative
	// names (or subject DN) cover the peer's identity, and ask for it with
	// CERTREQ payloads naming these CAs. Empty: PSK.
	RootCAs []*x509.Certificate
	// SendCert says when our certificates go into IKE_AUTH; the zero
	// value, CertSendIfAsked, is strongSwan's default.
	SendCert CertPolicy
	// Chains are further chains of ours, for peers that trust other CAs:
	// the first chain (Certificates first, then these) that leads to a CA
	// the peer's CERTREQ names is sent and signed with, else the first.
	Chains []CertChain
	// SignatureAuth says which signature AUTH methods we sign with and
	// accept; the zero value follows what the peer announced (sigauth.go).
	SignatureAuth SignatureAuth
	// AllowSHA1Auth permits AUTH method 1 (RSA PKCS#1 v1.5 with SHA-1) in
	// both directions, for peers without RFC 7427. Off by default: SHA-1
	// signatures are open to collision attacks.
	AllowSHA1Auth bool

	rootPool *x509.CertPool // RootCAs as a pool, made by validate
	certReq  []byte         // SHA-1 of each root's SubjectPublicKeyInfo
	chains   []localChain   // Certificates and Chains, made by validate

	IKE []Proposal // IKE SA proposals, in preference order
	ESP []Proposal // Child SA proposals

	// LocalTS and RemoteTS are the traffic selectors of the Child SA from
	// this side's point of view (TSi/TSr for an initiator, TSr/TSi for a
	// responder). Empty means this side's or the peer's IKE address.
	LocalTS, RemoteTS []message.Selector
	Mode              Mode
	// NarrowTS, if set, makes the responder's narrowing decision (RFC 7296
	// 2.9) for a Child SA instead of intersecting with RemoteTS/LocalTS:
	// it gets the initiator's TSi (the peer's side) and TSr (ours) and
	// returns them narrowed, or an error for TS_UNACCEPTABLE. It runs with
	// the IKE SA locked and must not call back into it. An error wrapping
	// ErrDefaultNarrowing makes the responder intersect with
	// RemoteTS/LocalTS as if NarrowTS were nil. espy run narrows through
	// the policy section's SPD with it.
	NarrowTS func(tsi, tsr []message.Selector) (nsi, nsr []message.Selector, err error)

	// ForceEncap makes the initiator claim to be behind a NAT so that ESP
	// is UDP-encapsulated and IKE moves to the NAT-T port (strongSwan's
	// encap=yes).
	ForceEncap bool
	// AllowWeak permits algorithms the default policy forbids (MD5,
	// MODP-768/1024/1536, DES). ENCR_NULL without integrity is never
	// allowed.
	AllowWeak bool

	// DisableFragmentation stops this side from announcing IKE
	// fragmentation (RFC 7383) in IKE_SA_INIT; without it, fragmentation
	// is used whenever the peer announces it too.
	DisableFragmentation bool
	// FragmentSize is the largest IP datagram (IP and UDP headers and the
	// non-ESP marker included) an IKE message is sent in once
	// fragmentation is negotiated; larger protected messages go out as
	// fragments. 0 means DefaultFragmentSize; at least MinFragmentSize.
	FragmentSize int

	// RemoteNATPort is the peer's NAT-T port (default 4500).
	RemoteNATPort uint16

	Retransmit Retransmit // zero value: DefaultRetransmit

	// NATKeepalive is the interval of NAT-T keepalives (RFC 3948 2.3, a
	// single 0xFF byte on the NAT-T port) sent while a NAT is detected in
	// front of this host. 0 means DefaultNATKeepalive; negative disables.
	NATKeepalive time.Duration

	// DPDInterval, when positive, makes each established IKE SA check
	// every interval that the peer is alive (an empty INFORMATIONAL
	// exchange) and delete itself, unregistering its Child SAs, when the
	// peer stops answering within the retransmission schedule.
	DPDInterval time.Duration

	// IKE SA lifetimes, as strongSwan's rekey_time, reauth_time,
	// over_time and rand_time. At the soft lifetime (IKERekeyTime, or
	// IKEReauthTime when set, less a random part of up to IKERandTime)
	// the IKE SA is rekeyed, or reauthenticated make-before-break; at the
	// hard lifetime (the earlier soft time plus IKEOverTime) it is deleted.
	// A rekey resets both. Zero means the default: IKERekeyTime
	// DefaultIKERekeyTime, IKEReauthTime off, IKEOverTime a tenth of the
	// larger soft time, IKERandTime IKEOverTime. Negative turns the timer
	// off (no soft action; without a soft lifetime no hard one either).
	IKERekeyTime  time.Duration
	IKEReauthTime time.Duration
	IKEOverTime   time.Duration
	IKERandTime   time.Duration

	// Child SA lifetimes, as strongSwan's rekey_time, life_time and
	// rand_time: each Child SA is rekeyed (RekeyChild) ChildRekeyTime after
	// it is set up, less a random part of up to ChildRandTime, and deleted
	// at ChildLifeTime if it has not been replaced by then. A failed rekey
	// is retried after a tenth of ChildRekeyTime. Zero means the default:
	// ChildRekeyTime DefaultChildRekeyTime, ChildLifeTime 110 % of
	// ChildRekeyTime, ChildRandTime their difference. Negative turns the
	// timer off (ChildRekeyTime < 0 leaves rekeying to the peer).
	ChildRekeyTime time.Duration
	ChildLifeTime  time.Duration
	ChildRandTime  time.Duration

	// Child SA volume limits, as strongSwan's rekey_bytes, life_bytes,
	// rand_bytes, rekey_packets, life_packets and rand_packets, counted
	// per direction by a data plane that implements LimitReporter (the
	// userspace one, esptun): when either direction has carried
	// ChildRekeyBytes bytes of ESP payload or ChildRekeyPackets packets,
	// less a random part of up to ChildRandBytes or ChildRandPackets, the
	// Child SA is rekeyed; at ChildLifeBytes or ChildLifePackets the data
	// plane stops using it and it is deleted. Zero turns a limit off; a
	// life limit must lie above its rekey limit. Without such a data
	// plane they have no effect. The data plane adds limits of its own
	// before the ESP sequence number runs out (RFC 4303 3.3.3).
	ChildRekeyBytes, ChildLifeBytes, ChildRandBytes       uint64
	ChildRekeyPackets, ChildLifePackets, ChildRandPackets uint64

	// Children are further Child SA configurations for the responder: a
	// Child SA (in IKE_AUTH or CREATE_CHILD_SA) is negotiated under the
	// first of this Config's own selectors and these whose mode matches
	// and whose selectors intersect the proposed ones.
	Children []ChildConfig

	// Registrar is told about every Child SA established under this
	// configuration. Nil: nobody is told.
	Registrar SARegistrar
	// Established, if set, is called (in its own goroutine) when an IKE SA
	// under this configuration completes IKE_AUTH, in either role, after
	// its Child SA (if any) is registered.
	Established func(*IKESA)

	// ReuseKE, when set, makes this side as initiator take the KE payload
	// of IKE_SA_INIT from the cache, reusing one key pair across IKE SAs
	// (RFC 7296 2.12; see KeyShareCache for what that costs in forward
	// secrecy). Nil, the default: a fresh key pair for every SA. The
	// responder ignores it.
	ReuseKE *KeyShareCache

	Rand   io.Reader    // nil: crypto/rand
	Logger *slog.Logger // nil: discard
}

// validate checks the configuration and fills in defaults in a copy.
func (c *Config) validate() (*Config, error) {
	cc := *c
	if err := cc.validateAuth(); err != nil {
		return nil, err
	}
	if len(cc.LocalID.Data) == 0 {
		return nil, fmt.Errorf("%w: no local identity", ErrConfig)
	}
	if len(cc.IKE) == 0 || len(cc.ESP) == 0 {
		return nil, fmt.Errorf("%w: IKE and ESP proposals are required", ErrConfig)
	}
	if len(cc.IKE) > 255 || len(cc.ESP) > 255 {
		return nil, fmt.Errorf("%w: more than 255 proposals", ErrConfig)
	}
	for i := range cc.IKE {
		if err := cc.IKE[i].validate(true, cc.AllowWeak); err != nil {
			return nil, fmt.Errorf("IKE proposal %d: %w", i+1, err)
		}
	}
	for i := range cc.ESP {
		if err := cc.ESP[i].validate(false, cc.AllowWeak); err != nil {
			return nil, fmt.Errorf("ESP proposal %d: %w", i+1, err)
		}
	}
	if cc.FragmentSize == 0 {
		cc.FragmentSize = DefaultFragmentSize
	}
	if cc.FragmentSize < MinFragmentSize || cc.FragmentSize > message.MaxMessageLen {
		return nil, fmt.Errorf("%w: fragment size %d outside %d-%d", ErrConfig, cc.FragmentSize, MinFragmentSize, message.MaxMessageLen)
	}
	if cc.SendCert > CertSendNever {
		return nil, fmt.Errorf("%w: certificate policy %d", ErrConfig, cc.SendCert)
	}
	if cc.RemoteNATPort == 0 {
		cc.RemoteNATPort = DefaultNATPort
	}
	if cc.NATKeepalive == 0 {
		cc.NATKeepalive = DefaultNATKeepalive
	}
	if cc.Retransmit.Timeout == 0 {
		cc.Retransmit = DefaultRetransmit
	}
	if cc.Retransmit.Base < 1 {
		return nil, fmt.Errorf("%w: retransmit base %v < 1", ErrConfig, cc.Retransmit.Base)
	}
	if cc.Logger == nil {
		cc.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cc.lifetimeDefaults(); err != nil {
		return nil, err
	}
	if err := cc.validateChildren(); err != nil {
		return nil, err
	}
	return &cc, nil
}

// hostSelector returns the selector covering exactly address a, all ports
// and protocols.
func hostSelector(a netip.Addr) message.Selector {
	t := message.TSIPv4AddrRange
	if a.Is6() {
		t = message.TSIPv6AddrRange
	}
	return message.Selector{TSType: t, EndPort: 65535, StartAddr: a, EndAddr: a}
}

// PrefixSelector returns the selector covering prefix p, all ports and
// protocols.
func PrefixSelector(p netip.Prefix) message.Selector {
	p = p.Masked()
	s := hostSelector(p.Addr())
	end := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range end {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				end[i] |= 0x80 >> b
			}
		}
	}
	s.EndAddr, _ = netip.AddrFromSlice(end)
	return s
}
