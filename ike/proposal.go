package ike

import (
	"fmt"
	"slices"
	"strings"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// Algorithm is one transform choice: an ID and, for AES, its key size.
type Algorithm struct {
	ID      uint16
	KeyBits int // Key Length attribute; 0 when the transform has none
}

// Proposal is a set of algorithms for an IKE SA or an ESP Child SA. Each
// list holds alternatives in order of preference.
type Proposal struct {
	Encr  []Algorithm
	PRF   []uint16 // IKE only
	Integ []uint16 // empty for AEAD-only proposals
	DH    []uint16 // the first group is the one a KE is sent for; ESP: PFS groups for CREATE_CHILD_SA (not used in IKE_AUTH)
	ESN   []uint16 // ESP only; empty means ESN_NO
}

var encrNames = map[string]Algorithm{
	"null":             {ID: message.ENCR_NULL},
	"chacha20poly1305": {ID: message.ENCR_CHACHA20_POLY1305},
}

var integNames = map[string]uint16{
	"sha1": message.AUTH_HMAC_SHA1_96, "sha256": message.AUTH_HMAC_SHA2_256_128,
	"sha384": message.AUTH_HMAC_SHA2_384_192, "sha512": message.AUTH_HMAC_SHA2_512_256,
	"md5": message.AUTH_HMAC_MD5_96, "aesxcbc": message.AUTH_AES_XCBC_96, "aescmac": message.AUTH_AES_CMAC_96,
}

var prfNames = map[string]uint16{
	"prfsha1": message.PRF_HMAC_SHA1, "prfsha256": message.PRF_HMAC_SHA2_256,
	"prfsha384": message.PRF_HMAC_SHA2_384, "prfsha512": message.PRF_HMAC_SHA2_512,
	"prfmd5": message.PRF_HMAC_MD5,
}

var prfForInteg = map[uint16]uint16{
	message.AUTH_HMAC_SHA1_96: message.PRF_HMAC_SHA1, message.AUTH_HMAC_SHA2_256_128: message.PRF_HMAC_SHA2_256,
	message.AUTH_HMAC_SHA2_384_192: message.PRF_HMAC_SHA2_384, message.AUTH_HMAC_SHA2_512_256: message.PRF_HMAC_SHA2_512,
}

var dhNames = map[string]uint16{
	"modp768": message.DH_MODP768, "modp1024": message.DH_MODP1024, "modp1536": message.DH_MODP1536,
	"modp2048": message.DH_MODP2048, "modp3072": message.DH_MODP3072, "modp4096": message.DH_MODP4096,
	"ecp256": message.DH_ECP256, "ecp384": message.DH_ECP384, "ecp521": message.DH_ECP521,
	"x25519": message.DH_CURVE25519, "curve25519": message.DH_CURVE25519,
}

func init() {
	for _, bits := range []int{128, 192, 256} {
		p := fmt.Sprintf("aes%d", bits)
		encrNames[p] = Algorithm{ID: message.ENCR_AES_CBC, KeyBits: bits}
		encrNames[p+"ctr"] = Algorithm{ID: message.ENCR_AES_CTR, KeyBits: bits}
		encrNames[p+"gcm8"] = Algorithm{ID: message.ENCR_AES_GCM_8, KeyBits: bits}
		encrNames[p+"gcm12"] = Algorithm{ID: message.ENCR_AES_GCM_12, KeyBits: bits}
		encrNames[p+"gcm16"] = Algorithm{ID: message.ENCR_AES_GCM_16, KeyBits: bits}
		encrNames[p+"gcm"] = Algorithm{ID: message.ENCR_AES_GCM_16, KeyBits: bits}
		encrNames[p+"gmac"] = Algorithm{ID: message.ENCR_NULL_AUTH_AES_GMAC, KeyBits: bits}
		encrNames[p+"ccm8"] = Algorithm{ID: message.ENCR_AES_CCM_8, KeyBits: bits}
		encrNames[p+"ccm12"] = Algorithm{ID: message.ENCR_AES_CCM_12, KeyBits: bits}
		encrNames[p+"ccm16"] = Algorithm{ID: message.ENCR_AES_CCM_16, KeyBits: bits}
	}
}

// ParseProposal parses a proposal in strongSwan's notation, tokens joined
// by '-': "aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048" (IKE;
// without a prf token the PRF follows the integrity algorithm) or
// "null-sha256", "aes128gmac", "aes128gcm16-esn" (ESP, ike=false).
func ParseProposal(s string, ike bool) (Proposal, error) {
	var p Proposal
	for _, tok := range strings.Split(strings.ToLower(s), "-") {
		if a, ok := encrNames[tok]; ok {
			p.Encr = append(p.Encr, a)
		} else if id, ok := integNames[tok]; ok {
			p.Integ = append(p.Integ, id)
		} else if id, ok := prfNames[tok]; ok && ike {
			p.PRF = append(p.PRF, id)
		} else if id, ok := dhNames[tok]; ok {
			p.DH = append(p.DH, id)
		} else if tok == "esn" && !ike {
			p.ESN = append(p.ESN, message.ESN_YES)
		} else if tok == "noesn" && !ike {
			p.ESN = append(p.ESN, message.ESN_NO)
		} else {
			return Proposal{}, fmt.Errorf("%w: proposal %q: unknown algorithm %q", ErrConfig, s, tok)
		}
	}
	if ike && len(p.PRF) == 0 {
		for _, i := range p.Integ {
			if prf, ok := prfForInteg[i]; ok {
				p.PRF = append(p.PRF, prf)
			}
		}
	}
	return p, nil
}

// MustParseProposal is ParseProposal for constants; it panics on error.
func MustParseProposal(s string, ike bool) Proposal {
	p, err := ParseProposal(s, ike)
	if err != nil {
		panic(err)
	}
	return p
}

// validate checks that p is complete and allowed by policy.
func (p *Proposal) validate(ike, allowWeak bool) error {
	if len(p.Encr) == 0 {
		return fmt.Errorf("%w: proposal without encryption algorithm", ErrConfig)
	}
	aead, plain := false, false
	for _, a := range p.Encr {
		e, err := ikecrypto.LookupEncr(a.ID)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if ike && !e.IKE {
			return fmt.Errorf("%w: %s cannot protect an IKE SA", ErrConfig, e.Name)
		}
		if _, err := e.CheckKeyBits(a.KeyBits); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if e.AEAD {
			aead = true
		} else {
			plain = true
		}
	}
	if aead && plain {
		// RFC 7296 3.3: AEAD and non-AEAD algorithms go in separate
		// proposals, since one needs an integrity transform and the other not.
		return fmt.Errorf("%w: AEAD and non-AEAD encryption in one proposal", ErrConfig)
	}
	if aead && len(p.Integ) > 0 {
		return fmt.Errorf("%w: integrity algorithm with AEAD encryption", ErrConfig)
	}
	if plain && len(p.Integ) == 0 {
		// This also forbids ENCR_NULL without integrity, always.
		return fmt.Errorf("%w: encryption without integrity", ErrConfig)
	}
	for _, id := range p.Integ {
		if ikecrypto.Weak(message.TransformINTEG, id) && !allowWeak {
			return fmt.Errorf("%w: integrity %d: %w", ErrConfig, id, ikecrypto.ErrWeak)
		}
		in, err := ikecrypto.LookupInteg(id)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if ike && in.Hash == nil {
			return fmt.Errorf("%w: %s cannot protect an IKE SA", ErrConfig, in.Name)
		}
	}
	if ike {
		if len(p.PRF) == 0 || len(p.DH) == 0 {
			return fmt.Errorf("%w: IKE proposal needs a PRF and a key exchange group", ErrConfig)
		}
		for _, id := range p.PRF {
			if ikecrypto.Weak(message.TransformPRF, id) && !allowWeak {
				return fmt.Errorf("%w: PRF %d: %w", ErrConfig, id, ikecrypto.ErrWeak)
			}
			if _, err := ikecrypto.LookupPRF(id); err != nil {
				return fmt.Errorf("%w: %w", ErrConfig, err)
			}
		}
		for _, id := range p.DH {
			if ikecrypto.Weak(message.TransformDH, id) && !allowWeak {
				return fmt.Errorf("%w: group %d: %w", ErrConfig, id, ikecrypto.ErrWeak)
			}
			if !supportedGroup(id) {
				return fmt.Errorf("%w: group %d: %w", ErrConfig, id, ikecrypto.ErrUnsupported)
			}
		}
		if len(p.ESN) > 0 {
			return fmt.Errorf("%w: ESN in an IKE proposal", ErrConfig)
		}
	} else {
		if len(p.PRF) > 0 {
			return fmt.Errorf("%w: PRF in an ESP proposal", ErrConfig)
		}
		for _, id := range p.DH {
			if ikecrypto.Weak(message.TransformDH, id) && !allowWeak {
				return fmt.Errorf("%w: PFS group %d: %w", ErrConfig, id, ikecrypto.ErrWeak)
			}
			if !supportedGroup(id) {
				return fmt.Errorf("%w: PFS group %d: %w", ErrConfig, id, ikecrypto.ErrUnsupported)
			}
		}
	}
	return nil
}

// withoutDH returns ESP proposals without their PFS groups, as used in
// IKE_AUTH, where the Child SA's keys come from the IKE SA's exchange
// (RFC 7296 1.2).
func withoutDH(ps []Proposal) []Proposal {
	out := make([]Proposal, len(ps))
	for i, p := range ps {
		p.DH = nil
		out[i] = p
	}
	return out
}

// pfsGroup returns the group of the first ESP proposal with PFS, or 0.
func pfsGroup(ps []Proposal) uint16 {
	for _, p := range ps {
		if len(p.DH) > 0 {
			return p.DH[0]
		}
	}
	return 0
}

func supportedGroup(id uint16) bool {
	for _, g := range ikecrypto.SupportedGroups {
		if g == id {
			return true
		}
	}
	return false
}

// transforms returns p as SA payload transforms.
func (p *Proposal) transforms(ike bool) []message.Transform {
	var ts []message.Transform
	for _, a := range p.Encr {
		t := message.Transform{Type: message.TransformENCR, ID: a.ID}
		if a.KeyBits != 0 && a.ID != message.ENCR_CHACHA20_POLY1305 {
			t.Attributes = []message.Attribute{{Type: message.AttrKeyLength, TV: true, Value: uint16(a.KeyBits)}}
		}
		ts = append(ts, t)
	}
	for _, id := range p.PRF {
		ts = append(ts, message.Transform{Type: message.TransformPRF, ID: id})
	}
	for _, id := range p.Integ {
		ts = append(ts, message.Transform{Type: message.TransformINTEG, ID: id})
	}
	for _, id := range p.DH {
		ts = append(ts, message.Transform{Type: message.TransformDH, ID: id})
	}
	if !ike {
		esn := p.ESN
		if len(esn) == 0 {
			esn = []uint16{message.ESN_NO}
		}
		for _, id := range esn {
			ts = append(ts, message.Transform{Type: message.TransformESN, ID: id})
		}
	}
	return ts
}

// Suite is the outcome of a negotiation: exactly one algorithm of each
// type.
type Suite struct {
	Encr  Algorithm
	PRF   uint16 // IKE only
	Integ uint16 // AUTH_NONE for AEAD
	DH    uint16 // IKE: the group; ESP: the PFS group of a CREATE_CHILD_SA, else DH_NONE
	ESN   bool
}

func (s Suite) String() string {
	return fmt.Sprintf("encr=%d/%d prf=%d integ=%d dh=%d esn=%v", s.Encr.ID, s.Encr.KeyBits, s.PRF, s.Integ, s.DH, s.ESN)
}

// saPayload builds an SA payload from proposals numbered from 1.
func saPayload(ps []Proposal, proto message.ProtocolID, spi []byte) *message.SA {
	sa := &message.SA{}
	for i := range ps {
		sa.Proposals = append(sa.Proposals, message.Proposal{
			Num: uint8(i + 1), Protocol: proto, SPI: spi, Transforms: ps[i].transforms(proto == message.ProtoIKE),
		})
	}
	return sa
}

// choose picks, as responder, the first of our proposals (in our order of
// preference) whose every transform type can be matched by one of the
// peer's proposals. It returns the chosen suite and the peer proposal it
// came from.
func choose(ours []Proposal, theirs []message.Proposal, proto message.ProtocolID) (Suite, *message.Proposal, bool) {
	for i := range ours {
		for j := range theirs {
			tp := &theirs[j]
			if tp.Protocol != proto {
				continue
			}
			if s, ok := match(&ours[i], tp, proto == message.ProtoIKE); ok {
				return s, tp, true
			}
		}
	}
	return Suite{}, nil, false
}

// match selects from one peer proposal using our proposal p. Every
// transform type present in the peer's proposal must be matched, and every
// type we require must be present.
func match(p *Proposal, tp *message.Proposal, ike bool) (Suite, bool) {
	var s Suite
	has := map[message.TransformType]bool{}
	for _, t := range tp.Transforms {
		has[t.Type] = true
	}
	pick := func(tt message.TransformType, ok func(t *message.Transform) bool) bool {
		for k := range tp.Transforms {
			t := &tp.Transforms[k]
			if t.Type == tt && ok(t) {
				return true
			}
		}
		return false
	}
	// pickID picks the first peer transform of type tt whose ID is one of
	// ours, and stores that ID in dst.
	pickID := func(tt message.TransformType, ids []uint16, dst *uint16) bool {
		return pick(tt, func(t *message.Transform) bool {
			if slices.Contains(ids, t.ID) {
				*dst = t.ID
				return true
			}
			return false
		})
	}
	found := pick(message.TransformENCR, func(t *message.Transform) bool {
		for _, a := range p.Encr {
			if a.ID == t.ID && (a.KeyBits == t.KeyLength() || a.ID == message.ENCR_CHACHA20_POLY1305 && t.KeyLength() == 0) {
				s.Encr = a
				return true
			}
		}
		return false
	})
	if !found {
		return s, false
	}
	e, _ := ikecrypto.LookupEncr(s.Encr.ID)
	s.Integ = message.AUTH_NONE
	if e.AEAD {
		// An AEAD proposal may list INTEG NONE only.
		for _, t := range tp.Transforms {
			if t.Type == message.TransformINTEG && t.ID != message.AUTH_NONE {
				return s, false
			}
		}
	} else if !pickID(message.TransformINTEG, p.Integ, &s.Integ) {
		return s, false
	}
	if ike {
		if !pickID(message.TransformPRF, p.PRF, &s.PRF) {
			return s, false
		}
		if !pickID(message.TransformDH, p.DH, &s.DH) {
			return s, false
		}
		return s, !has[message.TransformESN]
	}
	// ESP: with PFS groups one of them must be proposed; without, a DH
	// transform other than NONE cannot match.
	for _, t := range tp.Transforms {
		if t.Type == message.TransformPRF || len(p.DH) == 0 && t.Type == message.TransformDH && t.ID != message.DH_NONE {
			return s, false
		}
	}
	if len(p.DH) > 0 && !pickID(message.TransformDH, p.DH, &s.DH) {
		return s, false
	}
	esn := p.ESN
	if len(esn) == 0 {
		esn = []uint16{message.ESN_NO}
	}
	var esnID uint16
	if has[message.TransformESN] && !pickID(message.TransformESN, esn, &esnID) {
		return s, false
	}
	s.ESN = esnID == message.ESN_YES
	return s, true
}

// accepted checks, as initiator, the responder's SA payload: exactly one
// proposal, one transform of each type, all of them from what we proposed.
func accepted(ours []Proposal, sa *message.SA, proto message.ProtocolID) (Suite, *message.Proposal, error) {
	if len(sa.Proposals) != 1 {
		return Suite{}, nil, fmt.Errorf("%w: responder returned %d proposals", ErrProposal, len(sa.Proposals))
	}
	tp := &sa.Proposals[0]
	if tp.Protocol != proto {
		return Suite{}, nil, fmt.Errorf("%w: responder chose protocol %d", ErrProposal, tp.Protocol)
	}
	count := map[message.TransformType]int{}
	for _, t := range tp.Transforms {
		count[t.Type]++
		if count[t.Type] > 1 {
			return Suite{}, nil, fmt.Errorf("%w: responder returned two %v transforms", ErrProposal, t.Type)
		}
	}
	for i := range ours {
		if s, ok := match(&ours[i], tp, proto == message.ProtoIKE); ok {
			return s, tp, nil
		}
	}
	return Suite{}, nil, fmt.Errorf("%w: responder chose transforms we did not propose", ErrProposal)
}

// acceptsSuite reports whether one of ps allows every algorithm of s.
func acceptsSuite(ps []Proposal, s Suite) bool {
	sp := suiteProposal(s)
	tp := message.Proposal{Protocol: message.ProtoIKE, Transforms: sp.transforms(true)}
	for i := range ps {
		if _, ok := match(&ps[i], &tp, true); ok {
			return true
		}
	}
	return false
}
